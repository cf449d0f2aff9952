"""Baselines: delay alignment, baseline names and tools, one real Opus round trip."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

from codec import baselines
from codec.baselines import BASELINES, align, estimate_delay, parse_baselines, run_baseline


def _noise(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(n).astype(np.float32) * 0.1


@pytest.mark.parametrize("shift", [123, -57, 0])
def test_estimate_delay_recovers_a_known_shift(shift):
    ref = _noise(16000)
    deg = np.roll(ref, shift)  # deg[n + shift] = ref[n]
    assert estimate_delay(ref, deg, max_shift=1600) == shift


def test_align_removes_the_delay_and_keeps_the_length():
    ref = _noise(8000)
    deg = np.concatenate([np.zeros(123, np.float32), ref, np.zeros(40, np.float32)])
    aligned, delay = align(ref, deg, rate=16000)
    assert delay == 123
    assert aligned.shape == ref.shape
    np.testing.assert_allclose(aligned, ref)


def test_align_searches_only_within_the_window():
    ref = _noise(16000)
    deg = np.roll(ref, 4000)  # 250 ms at 16 kHz, beyond the 100 ms search window
    _, delay = align(ref, deg, rate=16000, max_delay_s=0.1)
    assert abs(delay) <= 1600


def test_parse_baselines():
    assert [s.name for s in parse_baselines("opus_6k, codec2_1200,opus_6k")] == [
        "opus_6k",
        "codec2_1200",
    ]
    assert parse_baselines("none") == []
    with pytest.raises(ValueError, match="unknown baseline 'mp3_128k'"):
        parse_baselines("opus_6k,mp3_128k")


def test_missing_tool_names_make_system_deps(monkeypatch):
    monkeypatch.setattr(baselines.shutil, "which", lambda tool: None)
    with pytest.raises(RuntimeError, match="c2enc, c2dec.*make system-deps"):
        baselines.check_tools([BASELINES["codec2_3200"]])


@pytest.mark.skipif(shutil.which("opusenc") is None, reason="opus-tools not installed")
def test_opus_round_trip_is_aligned_and_costs_about_its_bitrate():
    rate = 24000
    t = torch.arange(rate) / rate
    # A 1 s chirp-like tone with an envelope, so cross-correlation has one clear peak.
    wav = 0.3 * torch.sin(2 * torch.pi * (200 + 300 * t) * t) * torch.hann_window(rate)
    out = run_baseline(BASELINES["opus_12k"], wav, rate)
    assert out.sample_rate == baselines.OPUS_DECODE_RATE
    assert abs(out.audio.numel() - wav.numel()) < 0.05 * rate
    kbps = out.num_bytes * 8 / 1000.0
    assert 8.0 < kbps < 30.0  # nominal 12 plus Ogg overhead on a 1 s clip
    aligned, delay = align(wav.numpy(), out.audio.numpy(), out.sample_rate)
    assert abs(delay) < 0.02 * rate
    assert np.corrcoef(aligned, wav.numpy())[0, 1] > 0.8
