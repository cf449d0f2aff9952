"""Training throughput on this machine, in audio-seconds per second, for each named config.

Runs a handful of generator-only (mel warm-up) steps and adversarial steps with synthetic audio
(no data needed) and prints a markdown table. Usage:
    python benchmarks/train_speed.py [--configs a,b] [--steps 3] [--threads 2]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from codec.audio import write_audio
from codec.config import CodecConfig, named_configs
from codec.data import prepare
from codec.train import Trainer
from codec.trainconfig import TrainConfig

RECIPES = Path(__file__).resolve().parents[1] / "codec/configs/train"
CPU_RECIPE = RECIPES / "cpu-small.yaml"
# The harmonic decoder trains with its own losses (linear STFT, F0), which cost time too.
HARMONIC_RECIPE = RECIPES / "cpu-harmonic.yaml"
PHASES = ("warm-up (generator only)", "adversarial")


def _fake_data(root: Path) -> Path:
    gen = torch.Generator().manual_seed(0)
    src = root / "src"
    src.mkdir()
    t = torch.arange(24000 * 4) / 24000
    for i in range(2):
        tone = 0.3 * torch.sin(2 * torch.pi * (150 + 50 * i) * t) + 0.05 * torch.randn(
            t.numel(), generator=gen
        )
        write_audio(src / f"clip{i}.wav", tone, 24000)
    out = root / "prepared"
    prepare([src], out)
    return out


def measure(model: str, data: Path, steps: int, threads: int, batch: int, seconds: float) -> dict:
    harmonic = CodecConfig.named(model).decoder.excitation == "harmonic"
    base = TrainConfig.from_yaml(HARMONIC_RECIPE if harmonic else CPU_RECIPE)
    rows = {}
    for phase, warmup in ((PHASES[0], 10**9), (PHASES[1], 0)):
        cfg = base.model_copy(
            update={
                "model": model,
                "warmup_steps": warmup,
                "threads": threads,
                "batch_size": batch,
                "segment_seconds": seconds,
                "eval_data": None,
            }
        )
        with tempfile.TemporaryDirectory() as run:
            trainer = Trainer(cfg, [data], Path(run), "cpu")
            trainer.train_step()  # k-means init and allocator warm-up
            start = time.perf_counter()
            for _ in range(steps):
                trainer.train_step()
            elapsed = time.perf_counter() - start
        audio = steps * trainer.cfg.batch_size * trainer.seg_len / trainer.codec.sample_rate
        rows[phase] = audio / elapsed
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--configs",
        default="wavtok-small-75hz-causal-harmonic,wavtok-small-75hz-causal,wavtok-24k-75hz",
    )
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--segment-seconds", type=float, default=1.0)
    args = parser.parse_args()
    names = named_configs() if args.configs == "all" else args.configs.split(",")
    with tempfile.TemporaryDirectory() as tmp:
        data = _fake_data(Path(tmp))
        print(
            f"batch {args.batch_size} x {args.segment_seconds} s, {args.threads} threads, "
            f"CPU recipe {CPU_RECIPE.name} ({HARMONIC_RECIPE.name} for harmonic configs)\n"
        )
        print(f"| config | {PHASES[0]} audio-s/s | {PHASES[1]} audio-s/s |")
        print("|---|---|---|")
        for name in names:
            r = measure(name, data, args.steps, args.threads, args.batch_size, args.segment_seconds)
            print(f"| {name} | {r[PHASES[0]]:.1f} | {r[PHASES[1]]:.1f} |", flush=True)


if __name__ == "__main__":
    main()
