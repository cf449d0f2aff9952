"""Throughput of `wavtok transcode encode` in audio-hours per hour (higher is faster).

Generates a corpus of speech-like clips (5-10 s each, mixed formats and rates so loading has
real resampling to do), then encodes it from scratch with the local path (1 and 2 loader
threads) and the Ray path (a local instance with every CPU; its start-up is timed apart, the
pipeline's own start-up counts). Wall time covers scanning, model loading and writing.

The model is `DEFAULT_MODEL` when it is installed, else an untrained `wavtok-small-75hz-causal`
(speed does not depend on the weights). Nothing is downloaded.

    python benchmarks/transcode.py                          # 30 clips, about two minutes
    python benchmarks/transcode.py --clips 100 --batch-size 16 --no-ray
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import logging
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

FALLBACK_CONFIG = "wavtok-small-75hz-causal"
FORMATS = [(24000, 1, "WAV", "PCM_16", ".wav"), (16000, 1, "FLAC", "PCM_16", ".flac"),
           (44100, 2, "WAV", "PCM_16", ".wav")]  # fmt: skip


def speechlike(seconds: float, rate: int, rng: np.random.Generator) -> np.ndarray:
    """(T,) float32: gliding harmonics under a syllable-rate envelope, plus noise."""
    t = np.arange(int(seconds * rate)) / rate
    f0 = rng.uniform(90, 200) * (1 + 0.3 * np.sin(2 * np.pi * rng.uniform(0.5, 2) * t))
    phase = 2 * np.pi * np.cumsum(f0) / rate
    voiced = sum(np.sin(k * phase) / k for k in range(1, 8))
    envelope = np.clip(np.sin(2 * np.pi * rng.uniform(2, 5) * t), 0, None)
    return (0.2 * voiced * envelope + 0.02 * rng.standard_normal(t.size)).astype(np.float32)


def make_corpus(root: Path, clips: int, seed: int) -> float:
    """Write `clips` files under `root` (two levels deep); returns their total seconds."""
    rng = np.random.default_rng(seed)
    total = 0.0
    for i in range(clips):
        rate, channels, fmt, subtype, ext = FORMATS[i % len(FORMATS)]
        seconds = float(rng.uniform(5, 10))
        wav = np.stack([speechlike(seconds, rate, rng) for _ in range(channels)], axis=1)
        path = root / f"speaker{i % 4}" / f"clip{i:04d}{ext}"
        path.parent.mkdir(parents=True, exist_ok=True)
        sf.write(path, wav, rate, format=fmt, subtype=subtype)
        total += seconds
    return total


def pick_model(name: str | None, scratch: Path) -> str:
    from codec.model import DEFAULT_MODEL, Codec, resolve_model_dir

    if name:
        return name
    try:
        return str(resolve_model_dir(DEFAULT_MODEL))
    except FileNotFoundError:
        path = scratch / FALLBACK_CONFIG
        Codec.from_config(FALLBACK_CONFIG).save_pretrained(path)
        return str(path)


def run_once(corpus: Path, out: Path, model: str, batch_size: int, extra: list[str]) -> dict:
    from codec import cli

    argv = ["transcode", "encode", str(corpus), str(out), "--model", model]
    with contextlib.redirect_stdout(io.StringIO()):  # the table below says it all
        code = cli.main([*argv, "--batch-size", str(batch_size), "--quiet", *extra])
    if code != 0:
        raise SystemExit(f"transcode failed with status {code}")
    return json.loads((out / ".wavtok-transcode" / "summary.json").read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clips", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--model", default=None, help="model dir or name (default: see above)")
    parser.add_argument("--no-ray", action="store_true", help="skip the Ray path")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="wavtok-bench-") as tmp:
        scratch = Path(tmp)
        model = pick_model(args.model, scratch)
        seconds = make_corpus(scratch / "corpus", args.clips, args.seed)
        print(f"corpus: {args.clips} clips, {seconds / 60:.1f} min of audio; model: {model}")
        print(f"machine: {os.cpu_count()} CPUs; batch size {args.batch_size}\n")
        setups = [("local, 1 worker", ["--workers", "1"]), ("local, 2 workers", ["--workers", "2"])]
        if not args.no_ray:
            setups.append(("ray (local)", ["--ray"]))
        rows = []
        for i, (label, extra) in enumerate(setups):
            if extra == ["--ray"]:
                import ray

                start = time.monotonic()
                ray.init(include_dashboard=False, logging_level=logging.WARNING)
                print(f"ray.init: {time.monotonic() - start:.1f} s (not counted below)")
            summary = run_once(
                scratch / "corpus", scratch / f"out{i}", model, args.batch_size, extra
            )
            rows.append((label, summary))
        print(f"\n{'setup':<18} {'files':>5} {'audio h':>8} {'wall s':>7} {'audio-h/h':>10}")
        for label, s in rows:
            print(
                f"{label:<18} {s['files_done']:>5} {s['audio_hours']:>8.4f} "
                f"{s['wall_s']:>7.1f} {s['audio_hours_per_hour']:>10.1f}"
            )
        if not args.no_ray:
            import ray

            ray.shutdown()


if __name__ == "__main__":
    main()
