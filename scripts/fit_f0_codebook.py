"""Give a trained harmonic model codes that carry F0 (`quantizer.f0_scale`), with no training.

Every weight but the codebook is the source's; the codebook is re-fitted by k-means to the
source's lookup vectors plus the F0 channel over the speech segments of a training manifest
(entries whose `source` path names a `music` folder are left out unless --include-music). The
result is a model directory to evaluate (`wavtok eval --model OUT`) or to fine-tune
(`wavtok train --init-from OUT` with a config naming the same architecture).

    python scripts/fit_f0_codebook.py models/wavtok-cpu-75hz-causal \\
        --manifest data/train-real/manifest.jsonl --f0-scale 65 --out /tmp/wavtok-f0
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from codec.audio import load_mono
from codec.codebook_fit import speech_segment_paths, with_f0_codes
from codec.config import CODE_F0_RULES
from codec.model import Codec


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", help="a harmonic model with a decoder lookahead (dir or name)")
    parser.add_argument("--manifest", required=True, help="manifest.jsonl of wavtok data prepare")
    parser.add_argument("--out", required=True, help="model directory to write")
    parser.add_argument("--f0-scale", type=float, default=65.0, help="lookup units per log Hz")
    parser.add_argument("--name", default=None, help="the new model's name (default: OUT's)")
    parser.add_argument("--iters", type=int, default=15, help="k-means iterations")
    parser.add_argument(
        "--code-f0",
        choices=CODE_F0_RULES,
        default="smoothed",
        help="decoder.code_f0: how frames play the codes' F0 (default: smoothed)",
    )
    parser.add_argument("--include-music", action="store_true")
    args = parser.parse_args(argv)
    torch.set_num_threads(2)
    manifest = Path(args.manifest)
    try:
        source = Codec.from_pretrained(args.source)
        paths = speech_segment_paths(manifest, args.include_music)
        segments = (load_mono(path, source.sample_rate)[0] for path in paths)
        codec = with_f0_codes(source, args.f0_scale, segments, args.iters, args.code_f0)
    except (OSError, ValueError, KeyError) as err:
        print(f"fit_f0_codebook: {err}", file=sys.stderr)
        return 1
    codec.config = codec.config.model_copy(update={"name": args.name or Path(args.out).name})
    codec.save_pretrained(args.out)
    print(
        f"wrote {args.out}: {len(paths)} segments, f0_scale {args.f0_scale}, code_f0 {args.code_f0}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
