"""Search encoding (codec/search.py): fidelity and encode speed for each number of candidates.

For each `--candidates` value (and each `--beams` width and `--refines` count), encodes `--clips` test clips (every
n-th of the sorted set, so they spread over speakers) one at a time and in one padded batch,
decodes them, and prints the mean PESQ-wb, STOI, mel L1 and DNSMOS, the share of tokens that
differ from the nearest codes, and the encode speed as a real-time factor (audio seconds per
wall second; 1 = real time). 1 candidate is the plain nearest-code encoder.
`wavtok eval --search N [--beam W] [--refine P]` scores all 99 clips.

    python benchmarks/search.py                          # the default model, 1 4 8 16
    python benchmarks/search.py --model wavtok-cpu-75hz-causal-f0 --candidates 1 8 --clips 20
    python benchmarks/search.py --candidates 8 --beams 1 4        # greedy against a beam of 4
    python benchmarks/search.py --candidates 8 --refines 0 1      # one pass against two
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
TEST_CLIPS = ROOT.parent / "shared/data/test/libritts_test_clean"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="wavtok-cpu-75hz-causal")
    parser.add_argument("--candidates", type=int, nargs="+", default=[1, 4, 8, 16])
    parser.add_argument(
        "--beams", type=int, nargs="+", default=[1], help="beam widths (default: 1, greedy)"
    )
    parser.add_argument(
        "--refines", type=int, nargs="+", default=[0], help="refining passes (default: 0)"
    )
    parser.add_argument("--clips", type=int, default=10, help="test clips (default: 10)")
    parser.add_argument("--data", default=str(TEST_CLIPS), help="clip directory")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default: 2)")
    parser.add_argument("--batch", type=int, default=8, help="batch for the batched speed (8)")
    parser.add_argument("--no-dnsmos", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from codec.audio import load_mono
    from codec.metrics import mean_scores, score_clip
    from codec.model import Codec
    from codec.search import encode_with, settings_from

    codec = Codec.from_pretrained(args.model)
    paths = sorted(Path(args.data).glob("*.wav"))
    if not paths:
        raise SystemExit(f"no .wav clips under {args.data}")
    paths = paths[:: max(1, len(paths) // args.clips)][: args.clips]
    wavs = [load_mono(p, codec.sample_rate)[0] for p in paths]
    seconds = sum(w.numel() for w in wavs) / codec.sample_rate
    print(f"{codec.name}: {len(wavs)} clips, {seconds:.1f} s of audio, {args.threads} threads")
    print("| candidates | beam | refine | PESQ-wb | STOI | mel L1 | DNSMOS | tokens changed | "
          f"encode x RT | batch {args.batch} x RT |")  # fmt: skip
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    nearest = [codec.encode(w[None, None])[0] for w in wavs]
    trials = [
        (k, w, p)
        for k in args.candidates
        for w in (args.beams if k > 1 else [1])
        for p in (args.refines if k > 1 else [0])
    ]
    for k, beam, refine in trials:
        settings = settings_from(k, codec.config, beam, refine) if k > 1 else None

        def encode(wav, lengths=None, settings=settings):
            return encode_with(codec, wav, lengths, settings)

        start = time.perf_counter()
        codes = [encode(w[None, None])[0] for w in wavs]
        single = seconds / (time.perf_counter() - start)
        start = time.perf_counter()
        for i in range(0, len(wavs), args.batch):
            group = wavs[i : i + args.batch]
            padded = torch.nn.utils.rnn.pad_sequence(group, batch_first=True)[:, None]
            encode(padded, torch.tensor([w.numel() for w in group]))
        batched = seconds / (time.perf_counter() - start)
        scores, changed = [], 0.0
        for wav, ids, near in zip(wavs, codes, nearest, strict=True):
            audio, _ = codec.decode(ids, num_samples=torch.tensor([wav.numel()]))
            scores.append(
                score_clip(
                    wav, codec.sample_rate, audio[0, 0], codec.sample_rate, not args.no_dnsmos
                )
            )
            changed += float((ids != near).float().mean()) / len(wavs)
        m = mean_scores(scores)
        dnsmos = "-" if m["dnsmos"] is None else f"{m['dnsmos']:.3f}"
        print(
            f"| {k} | {beam} | {refine} | {m['pesq_wb']:.3f} | {m['stoi']:.4f} | {m['mel_l1']:.3f} | "
            f"{dnsmos} | {changed:.0%} | {single:.2f} | {batched:.2f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
