"""Audio I/O (`soundfile`) and conversion to the codec's input (`torchaudio` resampling).

Shapes: files decode to (C, T) float32 in [-1, 1]; models take mono (T,) at their sample rate.
"""

from __future__ import annotations

import io
import re
from fractions import Fraction
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
import torchaudio.functional as AF

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".mp3", ".opus", ".aiff", ".aif")
MIN_SAMPLE_RATE = 1000
MAX_SAMPLE_RATE = 768_000
# torchaudio's polyphase kernel grows with the reduced rate ratio: 23999 -> 24000 Hz would need
# gigabytes. Ratios are rounded to a denominator this small (under 0.01 % pitch error).
_MAX_RATIO_DENOMINATOR = 500
# torchaudio's default filter (6 zero crossings, Hann) leaves images and aliases only ~10 dB
# down near the lower rate's Nyquist: 8 kHz audio upsampled to 16 kHz gains a mirror of its
# 3-4 kHz band at 4-5 kHz, which PESQ-wb scored as extra bandwidth (+0.13 for Codec2 3200,
# docs/evaluation.md). These are librosa's "kaiser_best" settings: images over 55 dB down.
RESAMPLE_FILTER = {
    "lowpass_filter_width": 64,
    "rolloff": 0.9475937167399596,
    "resampling_method": "sinc_interp_kaiser",
    "beta": 14.769656459379492,
}


class AudioError(ValueError):
    """Audio that cannot be read or used; the message is one line, fit for a user."""


def read_audio(source: str | Path | bytes) -> tuple[torch.Tensor, int]:
    """A path or encoded bytes (wav, flac, ogg, mp3) -> ((C, T) float32 samples, sample rate)."""
    name = "<bytes>" if isinstance(source, bytes) else str(source)
    # libsndfile reports a missing file as a vague "System error", so check first.
    if not isinstance(source, bytes) and not Path(source).exists():
        raise AudioError(f"{name}: no such file")
    if not isinstance(source, bytes) and Path(source).is_dir():
        raise AudioError(f"{name}: is a directory, not an audio file")
    try:
        handle = io.BytesIO(source) if isinstance(source, bytes) else source
        data, sr = sf.read(handle, dtype="float32", always_2d=True)
    except FileNotFoundError:
        raise AudioError(f"{name}: no such file") from None
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as e:
        raise AudioError(f"{name}: unreadable audio ({_one_line(e)})") from None
    if data.shape[0] == 0:
        raise AudioError(f"{name}: audio has no samples")
    wav = torch.from_numpy(np.ascontiguousarray(data.T))
    if not torch.isfinite(wav).all():
        raise AudioError(f"{name}: audio contains NaN or infinite samples")
    return wav, int(sr)


def to_mono(wav: torch.Tensor, sample_rate: int, target_rate: int) -> torch.Tensor:
    """(C, T) or (T,) at `sample_rate` -> (T',) mono at `target_rate` (channel mean, then resample)."""
    if wav.dim() == 2:
        wav = wav.mean(dim=0)
    elif wav.dim() != 1:
        raise AudioError(
            f"expected (channels, samples) or (samples,) audio, got shape {tuple(wav.shape)}"
        )
    if not MIN_SAMPLE_RATE <= sample_rate <= MAX_SAMPLE_RATE:
        raise AudioError(
            f"unsupported sample rate {sample_rate} Hz "
            f"(expected {MIN_SAMPLE_RATE} to {MAX_SAMPLE_RATE} Hz)"
        )
    return resample(wav, sample_rate, target_rate)


def resample(wav: torch.Tensor | np.ndarray, rate: int, target: int) -> torch.Tensor:
    """(..., T) samples at `rate` Hz -> (..., T') float32 samples at `target` Hz.

    Band-limited with `RESAMPLE_FILTER`; the rate ratio is rounded as `_MAX_RATIO_DENOMINATOR`
    says. Every resampling in the codec, its training data and its evaluation goes through here.
    """
    wav = torch.as_tensor(wav, dtype=torch.float32)
    ratio = Fraction(target, rate).limit_denominator(_MAX_RATIO_DENOMINATOR)
    if ratio == 1:
        return wav
    return AF.resample(wav, ratio.denominator, ratio.numerator, **RESAMPLE_FILTER)


def load_mono(source: str | Path | bytes, target_rate: int) -> tuple[torch.Tensor, int]:
    """Read any supported audio and return ((T,) mono at `target_rate`, original sample rate)."""
    wav, sr = read_audio(source)
    return to_mono(wav, sr, target_rate), sr


def write_audio(
    path: str | Path, wav: torch.Tensor, sample_rate: int, fmt: str | None = None
) -> None:
    """(T,) or (C, T) float samples -> a file (format from the extension unless `fmt`)."""
    data = wav.detach().cpu().float().clamp(-1.0, 1.0).numpy()
    sf.write(str(path), data.T if data.ndim == 2 else data, sample_rate, format=fmt)


def encode_audio_bytes(wav: torch.Tensor, sample_rate: int, fmt: str = "WAV") -> bytes:
    """(T,) float samples -> encoded bytes: "WAV" (PCM16), "FLAC" or "PCM16" (raw little-endian)."""
    data = wav.detach().cpu().float().clamp(-1.0, 1.0).numpy()
    if fmt.upper() == "PCM16":
        return (data * 32767.0).round().astype("<i2").tobytes()
    buf = io.BytesIO()
    sf.write(buf, data, sample_rate, format=fmt.upper(), subtype="PCM_16")
    return buf.getvalue()


def _one_line(err: Exception) -> str:
    # libsndfile names an in-memory source by its repr, which means nothing to a user.
    text = re.sub(r"<_io\.BytesIO object at 0x[0-9a-fA-F]+>", "<bytes>", str(err))
    return " ".join(text.split()) or type(err).__name__
