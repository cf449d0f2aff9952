"""Training data: `wavtok data prepare` (any audio -> 24 kHz mono segments + manifest) and the
in-memory random-crop dataset the trainer samples from.

A prepared folder holds `manifest.jsonl` (one row per segment: path, num_samples, source) and
`audio/*.flac`. The dataset draws crops with an explicit `torch.Generator`, so a checkpoint can
store the sampler's state and resume exactly.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import torch

from codec.audio import AUDIO_EXTENSIONS, AudioError, load_mono, write_audio

SILENCE_PEAK = 1e-4
MANIFEST = "manifest.jsonl"


def _warn(msg: str) -> None:
    print(f"warning: {msg}", file=sys.stderr)


def _forbid_test_data(path: Path) -> None:
    # The shared test set is for evaluation only; training on it would make every figure a lie.
    if "/data/test/" in str(path.resolve()) + "/":
        raise ValueError(f"{path}: refusing to train on the held-out test set")


def find_audio(root: Path) -> list[Path]:
    """All audio files under `root` (or `root` itself), sorted."""
    if root.is_file():
        return [root]
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: no such file or directory")
    return sorted(p for p in root.rglob("*") if p.suffix.lower() in AUDIO_EXTENSIONS)


def prepare(
    sources: list[Path],
    out: Path,
    sample_rate: int = 24000,
    segment_seconds: float = 10.0,
    min_seconds: float = 0.5,
) -> dict[str, float]:
    """Resample every readable, non-silent file to mono `sample_rate`, split it into segments
    of at most `segment_seconds`, and write them plus `manifest.jsonl` under `out`."""
    for src in sources:
        _forbid_test_data(src)
    (out / "audio").mkdir(parents=True, exist_ok=True)
    seg_len, min_len = int(segment_seconds * sample_rate), int(min_seconds * sample_rate)
    rows, skipped = [], 0
    for src in sources:
        for path in find_audio(src):
            try:
                wav, _ = load_mono(path, sample_rate)
            except AudioError as e:
                _warn(f"skipping {e}")
                skipped += 1
                continue
            if float(wav.abs().max()) < SILENCE_PEAK:
                _warn(f"skipping {path}: silent")
                skipped += 1
                continue
            for start in range(0, wav.numel(), seg_len):
                seg = wav[start : start + seg_len]
                if seg.numel() < min_len or float(seg.abs().max()) < SILENCE_PEAK:
                    continue
                name = f"audio/{len(rows):07d}.flac"
                write_audio(out / name, seg, sample_rate)
                rows.append(
                    {"path": name, "num_samples": seg.numel(), "source": str(path), "offset": start}
                )
    with open(out / MANIFEST, "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row) + "\n")
    hours = sum(r["num_samples"] for r in rows) / sample_rate / 3600
    return {"segments": len(rows), "hours": hours, "skipped": skipped}


@dataclass
class Augment:
    """Random gain in dB (WavTokenizer draws -1 to -6 dB), optional low-level noise."""

    gain_db: tuple[float, float] = (-6.0, -1.0)
    noise_prob: float = 0.0
    noise_db: tuple[float, float] = (-60.0, -40.0)


def manifest_rows(manifest: Path) -> list[dict]:
    """A `manifest.jsonl` -> its rows (`path` relative to its folder, `num_samples`, `source`)."""
    if not manifest.is_file():
        raise FileNotFoundError(f"{manifest}: no manifest (run `wavtok data prepare`)")
    lines = manifest.read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip()]


class SegmentDataset:
    """All manifest audio held in RAM as int16; `sample(n, length, gen)` -> (n, 1, length) float."""

    def __init__(self, manifests: list[Path], sample_rate: int = 24000) -> None:
        self.clips: list[torch.Tensor] = []
        for manifest in manifests:
            root = manifest.parent if manifest.is_file() else manifest
            manifest = manifest if manifest.is_file() else manifest / MANIFEST
            _forbid_test_data(root)
            for row in manifest_rows(manifest):
                wav, _ = load_mono(root / row["path"], sample_rate)
                self.clips.append((wav.clamp(-1, 1) * 32767).round().to(torch.int16))
        if not self.clips:
            raise ValueError("training data is empty")
        lengths = torch.tensor([c.numel() for c in self.clips], dtype=torch.float64)
        self.weights = lengths / lengths.sum()  # crops are uniform over audio time
        self.sample_rate = sample_rate

    @property
    def hours(self) -> float:
        return sum(c.numel() for c in self.clips) / self.sample_rate / 3600

    def sample(self, n: int, length: int, gen: torch.Generator, augment: Augment) -> torch.Tensor:
        """n random crops of `length` samples (zero-padded if a clip is shorter), augmented."""
        idx = torch.multinomial(self.weights, n, replacement=True, generator=gen)
        out = torch.zeros(n, 1, length)
        for row, i in enumerate(idx.tolist()):
            clip = self.clips[i]
            start = int(torch.randint(0, max(1, clip.numel() - length + 1), (1,), generator=gen))
            seg = clip[start : start + length].float() / 32767
            # Normalise the crop's peak, then apply the random gain.
            seg = seg / seg.abs().max().clamp(min=1e-3) * 0.95
            lo, hi = augment.gain_db
            gain = lo + (hi - lo) * float(torch.rand((), generator=gen))
            out[row, 0, : seg.numel()] = seg * 10 ** (gain / 20)
            if augment.noise_prob and float(torch.rand((), generator=gen)) < augment.noise_prob:
                lo, hi = augment.noise_db
                level = 10 ** ((lo + (hi - lo) * float(torch.rand((), generator=gen))) / 20)
                out[row, 0] += level * torch.randn(length, generator=gen)
        return out


def _run_prepare(args: argparse.Namespace) -> int:
    stats = prepare(
        [Path(s) for s in args.sources], Path(args.out), args.sample_rate, args.segment_seconds
    )
    print(
        f"{stats['segments']} segments, {stats['hours']:.2f} h, {stats['skipped']} files skipped"
        f" -> {Path(args.out) / MANIFEST}"
    )
    return 0


def _run_synth(args: argparse.Namespace) -> int:
    from codec.synth import synthesize

    n = synthesize(Path(args.out), args.count, seed=args.seed)
    print(f"{n} synthetic utterances -> {args.out}")
    return 0


def register(subparsers) -> None:
    data = subparsers.add_parser("data", help="prepare training data")
    sub = data.add_subparsers(dest="data_command", required=True)
    p = sub.add_parser("prepare", help="audio folders -> 24 kHz segments + manifest.jsonl")
    p.add_argument("sources", nargs="+", help="audio files or folders (any format and rate)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--segment-seconds", type=float, default=10.0)
    p.add_argument("--sample-rate", type=int, default=24000)
    p.set_defaults(func=_run_prepare)
    s = sub.add_parser("synth", help="synthetic speech with espeak-ng (and festival if present)")
    s.add_argument("--out", required=True)
    s.add_argument("--count", type=int, default=200)
    s.add_argument("--seed", type=int, default=0)
    s.set_defaults(func=_run_synth)
