"""Classical speech codecs as baselines, run through their real command-line tools.

Opus (opus-tools: `opusenc` / `opusdec`) and Codec2 (`c2enc` / `c2dec`) each encode a clip to a
file in a temporary directory and decode it back. The encoded file's size gives the real
bitrate, container overhead included (Ogg pages make Opus at a nominal 6 kbps cost about
8.6 kbps on short clips). Both codecs add delay, so `align` shifts the output back onto the
reference by cross-correlation before scoring.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
from scipy.signal import correlate, correlation_lags

from codec.audio import resample

MAX_DELAY_S = 0.1
CODEC2_RATE = 8000
# opusdec writes one of Opus's native rates; 24 kHz matches the models and keeps the full band
# that Opus codes at these bitrates.
OPUS_DECODE_RATE = 24000


@dataclass(frozen=True)
class BaselineSpec:
    """A classical codec at one setting; `nominal_kbps` is what the encoder is asked for."""

    name: str
    label: str
    family: str
    setting: str
    nominal_kbps: float

    @property
    def tools(self) -> tuple[str, str]:
        return ("opusenc", "opusdec") if self.family == "opus" else ("c2enc", "c2dec")


BASELINES: dict[str, BaselineSpec] = {
    s.name: s
    for s in (
        BaselineSpec("opus_6k", "Opus 6 kbps", "opus", "6", 6.0),
        BaselineSpec("opus_12k", "Opus 12 kbps", "opus", "12", 12.0),
        BaselineSpec("codec2_3200", "Codec2 3200", "codec2", "3200", 3.2),
        BaselineSpec("codec2_1200", "Codec2 1200", "codec2", "1200", 1.2),
    )
}
DEFAULT_BASELINES = "opus_6k,opus_12k,codec2_3200,codec2_1200"


@dataclass
class BaselineOutput:
    """A decoded clip: (T,) float32 `audio` at `sample_rate` Hz, and the encoded size."""

    audio: torch.Tensor
    sample_rate: int
    num_bytes: int


def parse_baselines(text: str | None) -> list[BaselineSpec]:
    """A comma-separated list of baseline names -> specs; "" or "none" -> []."""
    if text is None or text.strip().lower() in ("", "none"):
        return []
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in BASELINES]
    if unknown:
        raise ValueError(
            f"unknown baseline {', '.join(map(repr, unknown))} (choose from {', '.join(BASELINES)})"
        )
    return [BASELINES[n] for n in dict.fromkeys(names)]


def check_tools(specs: list[BaselineSpec]) -> None:
    """Raise RuntimeError naming every missing command-line tool the baselines need."""
    needed = dict.fromkeys(tool for s in specs for tool in s.tools)
    missing = [tool for tool in needed if shutil.which(tool) is None]
    if missing:
        raise RuntimeError(
            f"baseline tools not found: {', '.join(missing)} "
            "(install them with `make system-deps`, or choose other --baselines)"
        )


def _run(cmd: list[str]) -> None:
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        detail = " ".join((proc.stderr or proc.stdout).split())[-300:]
        raise RuntimeError(f"{cmd[0]} failed with status {proc.returncode}: {detail}")


def _to_pcm16(wav: torch.Tensor) -> np.ndarray:
    return (wav.clamp(-1.0, 1.0).numpy() * 32767.0).round().astype("<i2")


def _opus(spec: BaselineSpec, wav: torch.Tensor, rate: int, tmp: Path) -> BaselineOutput:
    src, enc, dec = tmp / "in.wav", tmp / "out.opus", tmp / "out.wav"
    sf.write(str(src), _to_pcm16(wav), rate, subtype="PCM_16")
    _run(["opusenc", "--quiet", "--bitrate", spec.setting, str(src), str(enc)])
    _run(["opusdec", "--quiet", "--rate", str(OPUS_DECODE_RATE), str(enc), str(dec)])
    audio, out_rate = sf.read(str(dec), dtype="float32", always_2d=True)
    return BaselineOutput(torch.from_numpy(audio.mean(axis=1)), out_rate, enc.stat().st_size)


def _codec2(spec: BaselineSpec, wav: torch.Tensor, rate: int, tmp: Path) -> BaselineOutput:
    src, enc, dec = tmp / "in.raw", tmp / "out.bit", tmp / "out.raw"
    src.write_bytes(_to_pcm16(resample(wav, rate, CODEC2_RATE)).tobytes())
    # A headerless bit file, so its size is exactly the coded frames.
    _run(["c2enc", spec.setting, str(src), str(enc)])
    _run(["c2dec", spec.setting, str(enc), str(dec)])
    pcm = np.frombuffer(dec.read_bytes(), dtype="<i2").astype(np.float32) / 32768.0
    return BaselineOutput(torch.from_numpy(pcm.copy()), CODEC2_RATE, enc.stat().st_size)


def run_baseline(spec: BaselineSpec, wav: torch.Tensor, rate: int) -> BaselineOutput:
    """Encode and decode (T,) mono `wav` at `rate` Hz with a classical codec's real tools.

    The output is not yet aligned with the input (see `align`).
    """
    with tempfile.TemporaryDirectory(prefix=f"wavtok-{spec.name}-") as tmp:
        codec = _opus if spec.family == "opus" else _codec2
        return codec(spec, wav.detach().cpu().float(), rate, Path(tmp))


def estimate_delay(ref: np.ndarray, deg: np.ndarray, max_shift: int) -> int:
    """Samples by which (T',) `deg` lags (T,) `ref` (same rate), searched within +-`max_shift`.

    Positive: `deg[n + d] ~ ref[n]`, i.e. the codec added `d` samples of delay.
    """
    corr = correlate(deg, ref, mode="full", method="fft")
    lags = correlation_lags(len(deg), len(ref), mode="full")
    window = np.abs(lags) <= max_shift
    return int(lags[window][np.argmax(corr[window])])


def align(
    ref: np.ndarray | torch.Tensor,
    deg: np.ndarray | torch.Tensor,
    rate: int,
    max_delay_s: float = MAX_DELAY_S,
) -> tuple[np.ndarray, int]:
    """Shift (T',) `deg` onto (T,) `ref` (both at `rate` Hz) -> ((T,) aligned deg, delay).

    The delay (in samples, see `estimate_delay`) is removed, then the result is trimmed or
    zero-padded at the end to the reference's length.
    """
    ref = np.asarray(ref, dtype=np.float32)
    deg = np.asarray(deg, dtype=np.float32)
    delay = estimate_delay(ref, deg, int(round(max_delay_s * rate)))
    shifted = deg[delay:] if delay >= 0 else np.concatenate([np.zeros(-delay, np.float32), deg])
    out = np.zeros_like(ref)
    n = min(len(ref), len(shifted))
    out[:n] = shifted[:n]
    return out, delay
