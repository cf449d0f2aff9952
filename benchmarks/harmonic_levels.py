"""How sharp a harmonic model's low harmonics are, as decoded and with the input's F0.

For every `--every`-th test clip: encode, decode as the model does and again with the F0 that
`estimate_f0` finds in the input ("oracle F0", what training drives the source with), and read a
2048-point STFT (11.7 Hz bins) of each output and of the input at every harmonic of the input's
F0 below 1 kHz ("peak") and half-way between two harmonics ("valley"), in voiced frames within
50 dB of the loudest peak. Prints, per band, the mean peak level error in dB against the input and
the mean peak-to-valley ratio of input and output: an output whose harmonics sit in the wrong
place or are too wide has low peaks, high valleys and a small peak-to-valley ratio.
Usage:
    python benchmarks/harmonic_levels.py [--model DIR] [--clips 9] [--every 12]
        [--data ../shared/data/test/libritts_test_clean]
"""

from __future__ import annotations

import numpy as np
import torch
from harmonic_common import harmonic_model_and_clips, parser_for

from codec.audio import load_mono
from codec.model import Codec
from codec.pitch import estimate_f0

N_FFT, TOP_HZ, FLOOR_DB = 2048, 1000.0, 50.0
BANDS_HZ = ((0, 300), (300, 600), (600, 1000))


def _db_spectrogram(wav: torch.Tensor, hop: int) -> torch.Tensor:
    """(T,) samples -> (N_FFT / 2 + 1, F) magnitudes in dB, frame f centred on sample f hop."""
    window = torch.hann_window(N_FFT)
    spec = torch.stft(wav, N_FFT, hop, window=window, center=True, return_complex=True)
    return 20 * torch.log10(spec.abs() + 1e-7)


@torch.inference_mode()
def clip_harmonics(codec: Codec, wav: torch.Tensor) -> dict[str, np.ndarray]:
    """(T,) samples -> {"model", "oracle"}: rows (harmonic Hz, ref peak, out peak, ref valley,
    out valley), levels in dB, one row per harmonic below 1 kHz per voiced frame."""
    rate, hop = codec.sample_rate, codec.hop_length
    codes, _ = codec.encode(wav)
    latents = codec.quantizer.decode(codes)
    f0, voiced = estimate_f0(wav[None], rate, hop)
    frames = latents.shape[-1]
    f0, voiced = f0[0, :frames], voiced[0, :frames]
    outputs = {
        "model": codec.decoder(latents)[0],
        "oracle": codec.decoder(latents, f0=f0[None])[0],
    }
    ref = _db_spectrogram(wav, hop)
    rows: dict[str, np.ndarray] = {}
    for name, out in outputs.items():
        spec = _db_spectrogram(out.reshape(-1)[: wav.shape[-1]], hop)
        found = []
        for t in range(min(spec.shape[1], ref.shape[1], frames)):
            pitch = float(f0[t])
            if not voiced[t] or pitch <= 0:
                continue
            for h in range(1, int(TOP_HZ / pitch) + 1):
                peak = round(h * pitch * N_FFT / rate)
                valley = round((h + 0.5) * pitch * N_FFT / rate)
                found.append(
                    (h * pitch, ref[peak, t], spec[peak, t], ref[valley, t], spec[valley, t])
                )
        rows[name] = np.array(found, dtype=np.float64).reshape(-1, 5)
    return rows


def main() -> None:
    args = parser_for(__doc__, clips=9, every=12).parse_args()
    codec, clips = harmonic_model_and_clips(args)
    per_clip = [clip_harmonics(codec, load_mono(clip, codec.sample_rate)[0]) for clip in clips]
    print(f"{args.model}: {len(clips)} clips, harmonics below {TOP_HZ:.0f} Hz in voiced frames")
    for name in ("model", "oracle"):
        rows = np.concatenate([clip[name] for clip in per_clip])
        rows = rows[rows[:, 1] > rows[:, 1].max() - FLOOR_DB]
        hz, ref_peak, out_peak, ref_valley, out_valley = rows.T
        print(
            f"{name:>6} F0: {len(rows)} harmonics; peak error {np.mean(out_peak - ref_peak):+.2f} dB"
            f" (|{np.mean(np.abs(out_peak - ref_peak)):.2f}|), valley error"
            f" {np.mean(out_valley - ref_valley):+.2f} dB; peak-to-valley: input"
            f" {np.mean(ref_peak - ref_valley):.1f} dB, output {np.mean(out_peak - out_valley):.1f} dB"
        )
        for lo, hi in BANDS_HZ:
            band = (hz >= lo) & (hz < hi)
            print(
                f"        {lo:>4}-{hi} Hz: peak error {np.mean(out_peak[band] - ref_peak[band]):+.2f}"
                f" dB; peak-to-valley input {np.mean(ref_peak[band] - ref_valley[band]):.1f},"
                f" output {np.mean(out_peak[band] - out_valley[band]):.1f} dB"
            )


if __name__ == "__main__":
    main()
