"""The training-time quick check: which clips it scores, and that it scores them."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import soundfile as sf
from conftest import speechlike

from codec.model import Codec
from codec.quickeval import quick_eval, spread_pick


def test_spread_pick_covers_the_list():
    items = list(range(99))
    assert spread_pick(items, 5) == [0, 24, 49, 74, 98]
    assert spread_pick(items, 1) == [0]
    assert spread_pick(items[:3], 5) == [0, 1, 2]
    picked = spread_pick(items, 10)
    assert len(set(picked)) == 10 and picked[0] == 0 and picked[-1] == 98


def test_quick_eval_scores_clips_from_across_the_folder(tmp_path: Path, tiny_causal: Codec):
    for index in range(6):
        # Only the last clip is long enough to tell apart by its reconstruction's length.
        seconds = 2.0 if index == 5 else 1.0
        wav = speechlike(int(24000 * seconds), seed=index).numpy()
        sf.write(tmp_path / f"clip{index}.wav", wav, 24000)
    scores, last = quick_eval(tiny_causal, tmp_path, 2)
    assert math.isfinite(scores["pesq"]) and -1.0 <= scores["stoi"] <= 1.0
    assert last.numel() == 48000  # the last clip in the folder, not the second


def test_quick_eval_scores_each_voice_group(tmp_path: Path, tiny_causal: Codec):
    """Clips of a low and a high voice: PESQ per voice group beside the overall mean."""
    import torch

    t = torch.arange(24000) / 24000
    for name, f0 in (("a_low", 110.0), ("b_high", 220.0)):
        tone = sum(torch.sin(2 * math.pi * h * f0 * t) / h for h in range(1, 20))
        sf.write(tmp_path / f"{name}.wav", (0.1 * tone).numpy(), 24000)
    scores, _ = quick_eval(tiny_causal, tmp_path, 2)
    assert set(scores) == {"pesq", "stoi", "pesq_low", "pesq_high"}  # no clip at 140-180 Hz
    assert scores["pesq"] == pytest.approx((scores["pesq_low"] + scores["pesq_high"]) / 2)
