"""Artifacts a metric-trained model may learn: what PESQ or STOI forgive but a listener hears.

A model trained on a differentiable PESQ (`losses.pesq`) can raise PESQ-wb by adding a steady tone
and filling the pauses (found 2026-11-30). For each model this prints, over test clips, averaged
in dB (decoded minus reference):
- pause energy: in STFT frames 45 dB or more below the clip's loudest frame;
- > 8 kHz energy: above PESQ-wb's band, which it never hears;
- floor excess: the largest excess, over 0.1-4 kHz bins, of the 10th-percentile level over time,
  which a steady tone or hum raises and speech does not;
- frame-rate buzz: the peak at the token rate (75 Hz) in the modulation spectrum of the 4-8 kHz
  band's power envelope, over the spectrum 5-20 Hz either side (a flat envelope gives ~0 dB or
  less), printed for the decoded audio and the reference alone, not as a difference.
Usage:
    python benchmarks/artifacts.py [--model DIR ...] [--data ../shared/data/test/libritts_test_clean]
        [--every 10]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
import torchaudio.functional as AF

from codec.audio import load_mono
from codec.model import Codec

N_FFT, HOP = 1024, 256
PAUSE_DB, FLOOR_QUANTILE = 45.0, 0.1


def power_spectrogram(wav: torch.Tensor) -> torch.Tensor:
    """(T,) samples -> (N_FFT / 2 + 1, frames) power."""
    window = torch.hann_window(N_FFT)
    return torch.stft(wav, N_FFT, HOP, window=window, return_complex=True).abs().pow(2)


def frame_rate_buzz_db(wav: torch.Tensor, rate: int, frame_hz: float) -> float:
    """(T,) samples at `rate` Hz -> dB of the `frame_hz` line in the 4-8 kHz power envelope's
    modulation spectrum over its neighbours (5-20 Hz away)."""
    band = AF.highpass_biquad(AF.lowpass_biquad(wav, rate, 8000.0), rate, 4000.0)
    step = rate // 600  # the envelope at 600 Hz
    envelope = AF.lowpass_biquad(band.pow(2), rate, 250.0)[::step]
    envelope = envelope - envelope.mean()
    power = torch.fft.rfft(envelope * torch.hann_window(envelope.numel())).abs().pow(2)
    hz = torch.fft.rfftfreq(envelope.numel(), step / rate)
    offset = (hz - frame_hz).abs()
    line = power[offset < 2].mean()
    around = power[(offset > 5) & (offset < 20)].mean()
    return (10 * torch.log10(line / around)).item()


def clip_artifacts(ref: torch.Tensor, out: torch.Tensor, rate: int) -> dict[str, float | None]:
    """(T,) reference and (T,) decoded samples at `rate` Hz -> artifact levels in dB."""
    ref_pow, out_pow = power_spectrogram(ref), power_spectrogram(out)
    hz = torch.arange(ref_pow.shape[0]) * rate / N_FFT
    frame_energy = ref_pow.sum(0)
    pause = frame_energy < frame_energy.max() * 10 ** (-PAUSE_DB / 10)
    db = lambda a, b: 10 * torch.log10((a + 1e-10) / (b + 1e-10))  # noqa: E731
    low = (hz > 100) & (hz < 4000)
    floor = db(
        out_pow[low].quantile(FLOOR_QUANTILE, dim=1), ref_pow[low].quantile(FLOOR_QUANTILE, dim=1)
    )
    return {
        "pause_db": db(out_pow[:, pause].sum(), ref_pow[:, pause].sum()).item()
        if int(pause.sum()) > 5
        else None,
        "above_8k_db": db(out_pow[hz > 8000].sum(), ref_pow[hz > 8000].sum()).item(),
        "floor_excess_db": floor.max().item(),
    }


def clip_buzz(ref: torch.Tensor, out: torch.Tensor, rate: int, frame_hz: float) -> dict:
    """Frame-rate buzz of the decoded audio and of the reference, in dB."""
    return {
        "buzz_db": frame_rate_buzz_db(out, rate, frame_hz),
        "ref_buzz_db": frame_rate_buzz_db(ref, rate, frame_hz),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", nargs="+", default=["models/wavtok-cpu-75hz-causal"])
    parser.add_argument("--data", default="../shared/data/test/libritts_test_clean")
    parser.add_argument("--every", type=int, default=10, help="score every Nth clip")
    args = parser.parse_args()
    clips = sorted(Path(args.data).glob("*.wav"))[:: args.every]
    if not clips:
        parser.error(f"no .wav clips under {args.data}")
    for model_dir in args.model:
        codec = Codec.from_pretrained(model_dir).eval()
        frame_hz = codec.sample_rate / codec.hop_length
        rows = []
        for clip in clips:
            wav, _ = load_mono(clip, codec.sample_rate)
            codes, _ = codec.encode(wav.reshape(1, 1, -1))
            decoded, _ = codec.decode(codes)
            out = decoded.reshape(-1)[: wav.numel()]
            ref = wav.reshape(-1)[: out.numel()]
            row = clip_artifacts(ref, out, codec.sample_rate)
            rows.append(row | clip_buzz(ref, out, codec.sample_rate, frame_hz))
        means = {}
        for key in rows[0]:
            values = [r[key] for r in rows if r[key] is not None]
            means[key] = sum(values) / len(values) if values else float("nan")
        print(
            f"{model_dir}: pause {means['pause_db']:+.1f} dB, >8 kHz {means['above_8k_db']:+.1f} dB,"
            f" floor excess {means['floor_excess_db']:+.1f} dB, frame-rate buzz"
            f" {means['buzz_db']:+.1f} dB (reference {means['ref_buzz_db']:+.1f}) ({len(rows)} clips)"
        )


if __name__ == "__main__":
    main()
