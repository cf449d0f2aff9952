"""Where a codec loses intelligibility: STOI's intermediate measure split by band.

For each third-octave band STOI uses (150 Hz to ~4.3 kHz at 10 kHz), prints the mean correlation
of the decoded band envelope with the reference's over 384 ms windows, and the band's level
difference in dB, for a Wavtok model and optionally a classical baseline, on test clips.
Usage:
    python benchmarks/band_envelopes.py [--model DIR] [--baseline codec2_3200|none]
        [--data ../shared/data/test/libritts_test_clean] [--clips 8] [--every 12]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from pystoi import utils
from pystoi.stoi import BETA, DYN_RANGE, FS, MINFREQ, N_FRAME, NFFT, NUMBAND, OBM, N

from codec.audio import load_mono, resample
from codec.baselines import BASELINES, align, run_baseline
from codec.metrics import METRIC_RATE
from codec.model import Codec


def band_scores(ref: np.ndarray, deg: np.ndarray, rate: int) -> tuple[np.ndarray, np.ndarray]:
    """(T,) reference and aligned (T,) decoded samples at `rate` Hz -> per-band (15,) mean
    envelope correlation and (15,) level difference in dB (decoded minus reference)."""
    x, y = utils.resample_oct(ref, FS, rate), utils.resample_oct(deg, FS, rate)
    x, y = utils.remove_silent_frames(x, y, DYN_RANGE, N_FRAME, N_FRAME // 2)
    bands = []
    for signal in (x, y):
        spec = utils.stft(signal, N_FRAME, NFFT, overlap=2).T
        bands.append(np.sqrt(OBM @ np.abs(spec) ** 2))
    x_tob, y_tob = bands
    windows = range(N, x_tob.shape[1] + 1)
    xs = np.array([x_tob[:, m - N : m] for m in windows])
    ys = np.array([y_tob[:, m - N : m] for m in windows])
    scale = np.linalg.norm(xs, axis=2, keepdims=True) / (
        np.linalg.norm(ys, axis=2, keepdims=True) + 1e-12
    )
    yp = np.minimum(ys * scale, xs * (1 + 10 ** (-BETA / 20)))
    yp -= yp.mean(2, keepdims=True)
    xc = xs - xs.mean(2, keepdims=True)
    yp /= np.linalg.norm(yp, axis=2, keepdims=True) + 1e-12
    xc /= np.linalg.norm(xc, axis=2, keepdims=True) + 1e-12
    level = 10 * np.log10((y_tob**2).mean(1) + 1e-12) - 10 * np.log10((x_tob**2).mean(1) + 1e-12)
    return (yp * xc).sum(2).mean(0), level


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="model name or folder (default model)")
    parser.add_argument("--baseline", default="codec2_3200", help="a baseline name, or none")
    parser.add_argument("--data", default="../shared/data/test/libritts_test_clean")
    parser.add_argument("--clips", type=int, default=8)
    parser.add_argument("--every", type=int, default=12, help="take every Nth sorted clip")
    args = parser.parse_args()
    torch.set_num_threads(2)
    codec = Codec.from_pretrained(args.model).eval()
    clips = sorted(Path(args.data).glob("*.wav"))[:: args.every][: args.clips]
    if not clips:
        raise SystemExit(f"no .wav clips in {args.data}")
    systems = {codec.name: []} | ({} if args.baseline == "none" else {args.baseline: []})
    for clip in clips:
        wav, _ = load_mono(clip, codec.sample_rate)
        wav = wav.reshape(-1)
        ref = resample(wav, codec.sample_rate, METRIC_RATE).numpy()
        codes, _ = codec.encode(wav)
        decoded, _ = codec.decode(codes, num_samples=torch.tensor([wav.shape[-1]]))
        deg = resample(decoded.reshape(-1), codec.sample_rate, METRIC_RATE).numpy()
        systems[codec.name].append(band_scores(ref, deg[: len(ref)], METRIC_RATE))
        if args.baseline != "none":
            out = run_baseline(BASELINES[args.baseline], wav, codec.sample_rate)
            deg, _ = align(
                ref, resample(out.audio, out.sample_rate, METRIC_RATE).numpy(), METRIC_RATE
            )
            systems[args.baseline].append(band_scores(ref, deg, METRIC_RATE))
    _, centres = utils.thirdoct(FS, NFFT, NUMBAND, MINFREQ)
    print(f"{len(clips)} clips from {args.data}")
    print("| system | figure | " + " | ".join(f"{c:.0f} Hz" for c in centres) + " | mean |")
    print("|---|---|" + "---|" * (len(centres) + 1))
    for name, scores in systems.items():
        corr = np.mean([c for c, _ in scores], 0)
        level = np.mean([lv for _, lv in scores], 0)
        print(f"| {name} | correlation | " + " | ".join(f"{v:.3f}" for v in corr), end="")
        print(f" | {corr.mean():.3f} |")
        print(f"| {name} | level (dB) | " + " | ".join(f"{v:+.1f}" for v in level) + " | |")


if __name__ == "__main__":
    main()
