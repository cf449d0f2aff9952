"""What decoding in bf16 costs in quality: the same float32 tokens decoded in float32 and under
a CPU bf16 autocast (as `wavtok serve --dtype bfloat16` does), PESQ-wb and STOI of each against
the input, and the paired difference with its standard error. Speed: `benchmarks/speed.py
--decode-dtype bfloat16`.
Usage:
    python benchmarks/bf16_decode.py [--model NAME|DIR] [--every 1]
        [--data ../shared/data/test/libritts_test_clean]
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np
import torch

from codec import precision
from codec.audio import load_mono
from codec.metrics import score_clip
from codec.model import Codec

REPO = Path(__file__).resolve().parents[1]


def score(codec: Codec, clip: Path) -> list[float]:
    """[PESQ-wb, STOI] decoded in float32, then the same in bf16, for one clip."""
    wav, _ = load_mono(clip, codec.sample_rate)
    n = torch.tensor([wav.shape[-1]])
    with torch.inference_mode():
        codes, _ = codec.encode(wav[None, None])
        decoded = [codec.decode(codes, num_samples=n)[0][0, 0]]
        bf16 = precision.decode_dtype("bfloat16", codec.device)
        with precision.decode_autocast(bf16, codec.device):
            decoded.append(codec.decode(codes, num_samples=n)[0][0, 0].float())
    out: list[float] = []
    for audio in decoded:
        scores = score_clip(wav, codec.sample_rate, audio, codec.sample_rate, with_dnsmos=False)
        out += [scores.pesq_wb, scores.stoi]
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="wavtok-cpu-75hz-causal")
    parser.add_argument("--data", default=str(REPO.parent / "shared/data/test/libritts_test_clean"))
    parser.add_argument("--every", type=int, default=1, help="score every N-th clip (1: all)")
    args = parser.parse_args()
    clips = sorted(Path(args.data).glob("*.wav"))[:: max(1, args.every)]
    if len(clips) < 2:
        print(f"bf16_decode: error: fewer than 2 .wav clips in {args.data}", file=sys.stderr)
        return 1
    codec = Codec.from_pretrained(args.model).eval()
    rows = np.array([score(codec, clip) for clip in clips])
    print(f"{args.model}, {len(rows)} clips ({args.data})")
    print("| decode | PESQ-wb | STOI |\n|---|---:|---:|")
    for name, col in (("float32", 0), ("bfloat16", 2)):
        print(f"| {name} | {rows[:, col].mean():.4f} | {rows[:, col + 1].mean():.4f} |")
    for metric, col in (("PESQ-wb", 0), ("STOI", 1)):
        diff = rows[:, col + 2] - rows[:, col]
        se = diff.std(ddof=1) / math.sqrt(len(diff))
        print(f"bf16 - float32 {metric}: {diff.mean():+.4f} (s.e. {se:.4f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
