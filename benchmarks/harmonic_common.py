"""What the harmonic-model benchmarks share: their command-line options, the model and the clips.

`pitch_from_tokens.py`, `harmonic_levels.py` and `f0_codebook.py` each score a harmonic model
(one with a pulse-train source) on every `--every`-th test clip, `--clips` of them.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from codec.model import Codec

REPO = Path(__file__).resolve().parents[1]


def parser_for(doc: str, clips: int, every: int) -> argparse.ArgumentParser:
    """A parser with --model, --data, --clips and --every; `doc` is the script's docstring."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--model", default="wavtok-cpu-75hz-causal")
    parser.add_argument("--data", default=str(REPO.parent / "shared/data/test/libritts_test_clean"))
    parser.add_argument("--clips", type=int, default=clips)
    parser.add_argument("--every", type=int, default=every)
    return parser


def harmonic_model_and_clips(args: argparse.Namespace) -> tuple[Codec, list[Path]]:
    """The model (exits with a one-line reason unless it has a harmonic source) and the clips."""
    torch.set_num_threads(2)
    try:
        codec = Codec.from_pretrained(args.model).eval()
    except (OSError, ValueError) as err:
        raise SystemExit(f"{args.model}: {err}") from None
    if codec.decoder.head.source is None:
        raise SystemExit(f"{args.model}: not a harmonic model, it has no F0 to score")
    clips = sorted(Path(args.data).glob("*.wav"))[:: args.every][: args.clips]
    if not clips:
        raise SystemExit(f"{args.data}: no .wav clips")
    return codec, clips
