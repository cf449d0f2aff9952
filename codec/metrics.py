"""Per-clip quality metrics for `wavtok eval`: reference vs degraded speech, both mono float.

Each metric runs at the rate its model or definition expects, so callers pass signals at any
rate and `score_clip` resamples: PESQ-wb, STOI, SI-SDR and DNSMOS at 16 kHz; log-mel L1 at
24 kHz. Direction: higher is better for PESQ (1.0-4.64), STOI (0-1), SI-SDR (dB) and DNSMOS
(1-5); lower is better for mel L1.
"""

from __future__ import annotations

import math
import sys
from dataclasses import asdict, dataclass
from functools import lru_cache

import numpy as np
import torch

from codec.audio import resample

METRIC_RATE = 16000
MEL_RATE = 24000
PESQ_FLOOR = 1.0
# An identical pair has zero residual; the epsilon caps SI-SDR at a large finite value.
_SI_SDR_EPS = 1e-8


@dataclass
class ClipScores:
    """One clip's scores; `dnsmos` is None when skipped."""

    pesq_wb: float
    stoi: float
    mel_l1: float
    si_sdr: float
    dnsmos: float | None = None

    def as_dict(self) -> dict[str, float | None]:
        return asdict(self)


def match_length(deg: np.ndarray, length: int) -> np.ndarray:
    """Trim or zero-pad (T,) `deg` at the end to exactly `length` samples."""
    if deg.shape[-1] >= length:
        return deg[:length]
    return np.pad(deg, (0, length - deg.shape[-1]))


def pesq_wb(ref: np.ndarray, deg: np.ndarray) -> float:
    """Wide-band PESQ (MOS-LQO, about 1.0-4.64) of (T,) signals at 16 kHz.

    PESQ refuses output in which it finds no speech (e.g. an untrained model's near-silence);
    that is scored as the floor of the scale rather than dropped, so a bad system cannot look
    better by failing on its worst clips.
    """
    from pesq import PesqError, pesq

    if not np.any(deg):  # pesq's C code fails on all-zero input with an unrelated ValueError
        return PESQ_FLOOR
    try:
        return float(pesq(METRIC_RATE, ref, deg, "wb"))
    except PesqError:
        return PESQ_FLOOR


def stoi_score(ref: np.ndarray, deg: np.ndarray, rate: int = METRIC_RATE) -> float:
    """Short-time objective intelligibility (0-1) of equal-length (T,) signals at `rate` Hz."""
    from pystoi import stoi

    return float(stoi(ref, deg, rate, extended=False))


@lru_cache(maxsize=2)
def _mel_transform(rate: int):
    from torchaudio.transforms import MelSpectrogram

    # Vocos / WavTokenizer mel settings, so figures compare with the paper's training loss.
    return MelSpectrogram(
        sample_rate=rate, n_fft=1024, hop_length=256, n_mels=100, power=1.0, center=True
    )


def log_mel(wav: np.ndarray | torch.Tensor, rate: int = MEL_RATE) -> torch.Tensor:
    """(T,) samples at `rate` Hz -> (n_mels, frames) natural-log magnitude mel spectrogram."""
    mel = _mel_transform(rate)(torch.as_tensor(wav, dtype=torch.float32))
    return mel.clamp(min=1e-5).log()


def mel_l1(ref: np.ndarray, deg: np.ndarray, rate: int = MEL_RATE) -> float:
    """Mean absolute difference of log-mel spectrograms of equal-length (T,) signals (0 = same)."""
    return float((log_mel(ref, rate) - log_mel(deg, rate)).abs().mean())


def si_sdr(ref: np.ndarray, deg: np.ndarray) -> float:
    """Scale-invariant signal-to-distortion ratio in dB of equal-length (T,) signals."""
    ref = np.asarray(ref, dtype=np.float64) - np.mean(ref)
    deg = np.asarray(deg, dtype=np.float64) - np.mean(deg)
    alpha = np.dot(deg, ref) / (np.dot(ref, ref) + _SI_SDR_EPS)
    target = alpha * ref
    noise = deg - target
    return float(
        10.0
        * math.log10((np.dot(target, target) + _SI_SDR_EPS) / (np.dot(noise, noise) + _SI_SDR_EPS))
    )


def dnsmos_overall(wav: np.ndarray) -> float:
    """DNSMOS P.835 overall quality (1-5, no reference) of (T,) samples at 16 kHz.

    The first call loads the ONNX models (about 20 s); later calls take about 2 s per clip.
    """
    from speechmos import dnsmos

    clipped = np.clip(np.asarray(wav, dtype=np.float32), -1.0, 1.0)
    return float(dnsmos.run(clipped, METRIC_RATE)["ovrl_mos"])


def score_clip(
    ref: np.ndarray | torch.Tensor,
    ref_rate: int,
    deg: np.ndarray | torch.Tensor,
    deg_rate: int,
    with_dnsmos: bool = True,
) -> ClipScores:
    """Score (T,) `deg` at `deg_rate` Hz against (T,) `ref` at `ref_rate` Hz.

    `deg` must already be time-aligned with `ref`; it is resampled, then trimmed or zero-padded
    to the reference's length at each metric's rate.
    """
    ref16 = resample(ref, ref_rate, METRIC_RATE).numpy()
    deg16 = match_length(resample(deg, deg_rate, METRIC_RATE).numpy(), ref16.shape[-1])
    ref24 = resample(ref, ref_rate, MEL_RATE).numpy()
    deg24 = match_length(resample(deg, deg_rate, MEL_RATE).numpy(), ref24.shape[-1])
    return ClipScores(
        pesq_wb=pesq_wb(ref16, deg16),
        stoi=stoi_score(ref16, deg16),
        mel_l1=mel_l1(ref24, deg24),
        si_sdr=si_sdr(ref16, deg16),
        dnsmos=dnsmos_overall(deg16) if with_dnsmos else None,
    )


def mean_scores(scores: list[ClipScores]) -> dict[str, float | None]:
    """Average each metric over clips; a metric absent (None) or non-finite on all is None."""
    out: dict[str, float | None] = {}
    for key in ClipScores.__dataclass_fields__:
        values = [v for s in scores if (v := getattr(s, key)) is not None and math.isfinite(v)]
        if len(values) < len([s for s in scores if getattr(s, key) is not None]):
            print(f"wavtok: warning: non-finite {key} values left out of the mean", file=sys.stderr)
        out[key] = float(np.mean(values)) if values else None
    return out
