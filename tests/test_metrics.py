"""Metrics: identical signals score at the top of each scale, added noise lowers every score."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from codec.metrics import (
    ClipScores,
    dnsmos_overall,
    mean_scores,
    mel_l1,
    pesq_wb,
    resample,
    score_clip,
    si_sdr,
    stoi_score,
)

CLIP = (
    Path(__file__).resolve().parents[1].parent
    / "shared/data/test/libritts_test_clean/1284_1180_000007_000001.wav"
)


@pytest.fixture(scope="module")
def speech16() -> np.ndarray:
    """3 s of real speech at 16 kHz."""
    if not CLIP.is_file():
        pytest.skip(f"test clip not found: {CLIP}")
    wav, rate = sf.read(str(CLIP), dtype="float32")
    return resample(wav[: 3 * rate], rate, 16000).numpy()


def _noisy(wav: np.ndarray, snr_db: float) -> np.ndarray:
    rng = np.random.default_rng(0)
    noise = rng.standard_normal(wav.shape).astype(np.float32)
    noise *= np.sqrt(np.mean(wav**2) / np.mean(noise**2) / 10 ** (snr_db / 10))
    return np.clip(wav + noise, -1.0, 1.0)


def test_identical_signals_score_at_the_top(speech16):
    assert pesq_wb(speech16, speech16) > 4.5
    assert stoi_score(speech16, speech16) > 0.999
    assert si_sdr(speech16, speech16) > 80.0
    assert mel_l1(speech16, speech16, 16000) < 1e-6


def test_noise_lowers_every_score(speech16):
    noisy = _noisy(speech16, 10.0)
    assert pesq_wb(speech16, noisy) < 3.0
    assert stoi_score(speech16, noisy) < 0.99
    assert 5.0 < si_sdr(speech16, noisy) < 15.0  # about the 10 dB SNR
    assert mel_l1(speech16, noisy, 16000) > 0.1


def test_si_sdr_ignores_scale(speech16):
    assert si_sdr(speech16, 0.5 * speech16) > 80.0


def test_pesq_scores_silent_output_at_the_floor(speech16):
    assert pesq_wb(speech16, np.zeros_like(speech16)) == pytest.approx(1.0, abs=0.1)


def test_score_clip_resamples_and_matches_length(speech16):
    ref24 = resample(speech16, 16000, 24000).numpy()
    scores = score_clip(ref24, 24000, speech16[:-100], 16000, with_dnsmos=False)
    assert scores.pesq_wb > 4.0 and scores.stoi > 0.99 and scores.dnsmos is None


def test_mean_scores_skips_missing_values():
    scores = [ClipScores(2.0, 0.8, 1.0, 5.0, None), ClipScores(3.0, 0.9, 0.5, 7.0, None)]
    mean = mean_scores(scores)
    assert mean["pesq_wb"] == pytest.approx(2.5) and mean["dnsmos"] is None


def test_dnsmos_prefers_clean_speech(speech16):
    # Loads the DNSMOS ONNX models: a few seconds warm, up to ~20 s on a cold disk cache.
    clean = dnsmos_overall(speech16)
    assert 1.0 <= clean <= 5.0
    assert dnsmos_overall(_noisy(speech16, 0.0)) < clean
