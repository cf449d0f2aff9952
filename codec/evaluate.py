"""`wavtok eval`: score a model against classical codecs on a directory of speech clips.

Every clip under `--data` (sorted, recursively) is loaded, downmixed and resampled to
`REF_RATE`, then round-tripped through the model in padded batches and through each baseline's
real command-line tools. Each output is scored against its reference (see `codec.metrics`) and
`codec.report` writes the report. Heavy libraries load inside `run`, so building the CLI parser
stays cheap.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

    from codec.baselines import BaselineSpec
    from codec.model import Codec
    from codec.report import SystemResult
    from codec.search import SearchSettings

REF_RATE = 24000
MIN_DURATION_S = 0.5
SILENCE_PEAK = 1e-4
CLIP_EXTENSIONS = (".wav", ".flac", ".ogg", ".mp3")


@dataclass
class Clip:
    """A usable clip: its name (path relative to the data dir) and (T,) mono at REF_RATE."""

    name: str
    wav: torch.Tensor

    @property
    def duration(self) -> float:
        return self.wav.shape[-1] / REF_RATE


def _warn(message: str) -> None:
    print(f"wavtok: warning: {' '.join(message.split())}", file=sys.stderr)


def _progress(total: int, desc: str):
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="clip", file=sys.stderr, dynamic_ncols=True)


def find_clips(data_dir: Path) -> list[Path]:
    """Audio files (wav, flac, ogg, mp3) under `data_dir`, recursively, sorted by path."""
    found = (p for p in data_dir.rglob("*") if p.suffix.lower() in CLIP_EXTENSIONS)
    return sorted(
        (p for p in found if p.is_file()), key=lambda p: p.relative_to(data_dir).as_posix()
    )


def load_clips(paths: list[Path], data_dir: Path) -> tuple[list[Clip], list[tuple[str, str]]]:
    """Read clips, skipping (with a warning) unreadable, silent and too-short ones.

    Returns (usable clips, [(clip name, reason skipped)]).
    """
    from codec.audio import AudioError, load_mono

    clips, skipped = [], []
    for path in paths:
        name = path.relative_to(data_dir).as_posix()
        try:
            wav, _ = load_mono(path, REF_RATE)
        except AudioError as e:
            reason = str(e).removeprefix(f"{path}: ")
        else:
            peak = float(wav.abs().max())
            if wav.shape[-1] < MIN_DURATION_S * REF_RATE:
                reason = f"too short ({wav.shape[-1] / REF_RATE:.2f} s < {MIN_DURATION_S} s)"
            elif peak < SILENCE_PEAK:
                reason = f"silent (peak {peak:.1e} < {SILENCE_PEAK:g})"
            else:
                clips.append(Clip(name, wav))
                continue
        _warn(f"skipping {name}: {reason}")
        skipped.append((name, reason))
    return clips, skipped


def _examples(clips: list[Clip]) -> set[str]:
    from codec.report import SPECTROGRAM_CLIPS

    return {c.name for c in clips[:SPECTROGRAM_CLIPS]}


def evaluate_model(
    codec: Codec,
    clips: list[Clip],
    batch_size: int,
    with_dnsmos: bool,
    search: SearchSettings | None = None,
) -> SystemResult:
    """Round-trip every clip through `codec` in padded batches and score it.

    Clips are batched by length to waste little compute on padding; `lengths` keeps each
    item's codes identical to encoding it alone, and `num_samples` trims the decoded audio.
    With `search`, tokens are chosen by `codec.search.search_encode` instead of `encode`.
    """
    import torch

    from codec.audio import resample
    from codec.metrics import match_length, score_clip
    from codec.quantizer import codebook_usage
    from codec.report import SystemResult
    from codec.search import encode_with
    from codec.tokenfile import TokenHeader, dumps

    label = codec.name
    if search is not None:
        beam = f", beam {search.beam}" if search.beam > 1 else ""
        refine = f", refine {search.refine}" if search.refine else ""
        label = f"{codec.name} (search {search.candidates}{beam}{refine})"
    result = SystemResult(
        key="model", label=label, kind="model", nominal_kbps=codec.bitrate / 1000.0
    )
    examples = _examples(clips)
    order = sorted(range(len(clips)), key=lambda i: clips[i].wav.shape[-1])
    per_clip: dict[int, tuple] = {}
    all_codes = []
    with _progress(len(clips), f"model {codec.name}") as bar:
        for start in range(0, len(order), batch_size):
            batch = order[start : start + batch_size]
            wavs = [resample(clips[i].wav, REF_RATE, codec.sample_rate) for i in batch]
            lengths = torch.tensor([w.shape[-1] for w in wavs])
            padded = torch.nn.utils.rnn.pad_sequence(wavs, batch_first=True)[:, None]
            codes, code_lengths = encode_with(codec, padded, lengths, search)
            audio, sample_lengths = codec.decode(codes, code_lengths, num_samples=lengths)
            for j, i in enumerate(batch):
                ids = codes[j, : int(code_lengths[j])].cpu()
                all_codes.append(ids)
                header = TokenHeader.for_model(codec, lengths[j])
                bits = 8 * len(dumps(ids, header))
                deg = audio[j, 0, : int(sample_lengths[j])].float().cpu()
                scores = score_clip(clips[i].wav, REF_RATE, deg, codec.sample_rate, with_dnsmos)
                per_clip[i] = (scores, bits, header.duration_s())
                if clips[i].name in examples:
                    deg24 = resample(deg, codec.sample_rate, REF_RATE).numpy()
                    result.examples[clips[i].name] = match_length(deg24, clips[i].wav.shape[-1])
                bar.update(1)
    for i, clip in enumerate(clips):
        scores, bits, duration = per_clip[i]
        result.add(clip.name, scores, bits, duration, None)
    usage = codebook_usage(torch.cat(all_codes), codec.codebook_size)
    # max() turns the -0.0 that a single used code gives into 0.0.
    result.codes_used, result.entropy_bits = usage.codes_used, max(0.0, usage.entropy_bits)
    result.codebook_size = codec.codebook_size
    return result


def evaluate_baseline(spec: BaselineSpec, clips: list[Clip], with_dnsmos: bool) -> SystemResult:
    """Round-trip every clip through a classical codec's tools, align, and score it."""
    from codec.audio import resample
    from codec.baselines import align, run_baseline
    from codec.metrics import match_length, score_clip
    from codec.report import SystemResult

    result = SystemResult(
        key=spec.name, label=spec.label, kind="baseline", nominal_kbps=spec.nominal_kbps
    )
    examples = _examples(clips)
    with _progress(len(clips), spec.label) as bar:
        for clip in clips:
            out = run_baseline(spec, clip.wav, REF_RATE)
            ref = resample(clip.wav, REF_RATE, out.sample_rate).numpy()
            aligned, delay = align(ref, out.audio.numpy(), out.sample_rate)
            scores = score_clip(clip.wav, REF_RATE, aligned, out.sample_rate, with_dnsmos)
            result.add(clip.name, scores, 8 * out.num_bytes, clip.duration, delay)
            if clip.name in examples:
                deg24 = resample(aligned, out.sample_rate, REF_RATE).numpy()
                result.examples[clip.name] = match_length(deg24, clip.wav.shape[-1])
            bar.update(1)
    return result


def evaluate_reference(clips: list[Clip], with_dnsmos: bool) -> SystemResult:
    """The ground truth scored against itself: the top of each metric's scale on this data."""
    from codec.metrics import score_clip
    from codec.report import SystemResult

    result = SystemResult(key="ground_truth", label="Ground truth", kind="reference")
    with _progress(len(clips), "ground truth") as bar:
        for clip in clips:
            scores = score_clip(clip.wav, REF_RATE, clip.wav, REF_RATE, with_dnsmos)
            result.add(clip.name, scores, None, clip.duration, None)
            bar.update(1)
    return result


def run(args: argparse.Namespace) -> int:
    """Run `wavtok eval` from parsed arguments; writes the report and returns 0."""
    from codec.baselines import check_tools, parse_baselines

    data_dir = Path(args.data)
    if not data_dir.is_dir():
        raise FileNotFoundError(f"{data_dir}: data directory does not exist")
    if args.limit is not None and args.limit < 1:
        raise ValueError(f"--limit must be at least 1, got {args.limit}")
    if args.batch_size < 1:
        raise ValueError(f"--batch-size must be at least 1, got {args.batch_size}")
    out_dir = Path(args.out)
    if out_dir.exists() and not out_dir.is_dir():
        raise FileExistsError(f"{out_dir}: exists and is not a directory")
    specs = parse_baselines(args.baselines)
    check_tools(specs)
    paths = find_clips(data_dir)[: args.limit]
    if not paths:
        raise ValueError(f"no audio clips ({', '.join(CLIP_EXTENSIONS)}) found under {data_dir}")

    import torch

    from codec.cli import search_settings
    from codec.model import Codec, resolve_model_dir
    from codec.pitch import median_f0
    from codec.report import EvalRun, voice_table, write_report

    codec = Codec.from_pretrained(args.model, device=args.device)
    clips, skipped = load_clips(paths, data_dir)
    if not clips:
        raise ValueError(f"no usable clips under {data_dir} ({len(skipped)} skipped)")
    with_dnsmos = not args.no_dnsmos
    search = search_settings(args, codec.config)
    with torch.inference_mode():
        systems = [evaluate_model(codec, clips, args.batch_size, with_dnsmos, search)]
        systems += [evaluate_baseline(spec, clips, with_dnsmos) for spec in specs]
        systems.append(evaluate_reference(clips, with_dnsmos))
    run_result = EvalRun(
        model={
            "name": codec.name,
            "path": str(resolve_model_dir(args.model)),
            "sample_rate": codec.sample_rate,
            "frame_rate": codec.frame_rate,
            "codebook_size": codec.codebook_size,
            "codebook_id": codec.codebook_id,
            "bitrate_bps": codec.bitrate,
            "search_candidates": search.candidates if search else None,
            "search_beam": search.beam if search else None,
            "search_refine": search.refine if search else None,
        },
        data_dir=str(data_dir),
        systems=systems,
        skipped=skipped,
        dnsmos=with_dnsmos,
        references={c.name: c.wav.numpy() for c in clips if c.name in _examples(clips)},
        voice_f0={c.name: median_f0(c.wav, REF_RATE) for c in clips},
    )
    table = write_report(run_result, out_dir)
    print(table)
    if voices := voice_table(run_result):
        print(
            f"\nBy voice pitch (PESQ-wb / STOI, clips grouped by the reference's median F0):\n{voices}"
        )
    print(f"\n{len(clips)} clips scored, {len(skipped)} skipped; report in {out_dir}/report.md")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `eval` subcommand to the `wavtok` CLI."""
    from codec.baselines import DEFAULT_BASELINES
    from codec.cli import add_search_argument
    from codec.model import DEFAULT_MODEL

    p = subparsers.add_parser(
        "eval",
        help="score a model against Opus and Codec2 on a directory of clips",
        description="Round-trip every clip under --data through the model and classical "
        "baselines; write report.md, results.json, per_clip.csv and plots to --out.",
    )
    p.add_argument(
        "--model", default=DEFAULT_MODEL, help="model directory or name (default: %(default)s)"
    )
    p.add_argument("--data", required=True, help="directory of clips (wav, flac, ogg, mp3)")
    p.add_argument(
        "--baselines",
        default=DEFAULT_BASELINES,
        help="comma-separated baselines, or 'none' (default: %(default)s)",
    )
    p.add_argument("--limit", type=int, default=None, help="score only the first N clips")
    p.add_argument("--batch-size", type=int, default=4, help="model batch size (default: 4)")
    p.add_argument("--no-dnsmos", action="store_true", help="skip DNSMOS (saves ~2 s per clip)")
    add_search_argument(p)
    p.add_argument("--device", default="cpu", help="torch device for the model (default: cpu)")
    p.add_argument("--out", required=True, help="report directory (created if needed)")
    p.set_defaults(func=run)


def main(argv: list[str] | None = None) -> int:
    """`python -m codec.evaluate ...`: the eval command without the rest of the CLI."""
    parser = argparse.ArgumentParser(prog="wavtok")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["eval", *(sys.argv[1:] if argv is None else argv)])
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
