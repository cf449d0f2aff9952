"""`wavtok transcode`: whole corpora, audio <-> token files, resumable, locally or on Ray.

    wavtok transcode encode IN_DIR OUT_DIR      audio tree -> mirrored .wtok tree (or --shards)
    wavtok transcode decode IN_DIR OUT_DIR      .wtok tree -> mirrored 16-bit .wav tree
    wavtok transcode roundtrip IN_DIR OUT_DIR   audio tree -> tokens -> .wav tree

State lives in OUT_DIR/.wavtok-transcode/ (manifest.jsonl, errors.jsonl, summary.json); see
docs/transcode.md. Heavy imports (torch, Ray, pyarrow) happen only when a command runs.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from collections import deque
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

from codec.precision import DTYPE_NAMES
from codec.transcode_plan import discover, make_batches, make_items, probe

if TYPE_CHECKING:
    from codec.search import SearchSettings
    from codec.transcode_core import Item, Journal, ModelInfo, Sink, Stats

MODES = ("encode", "decode", "roundtrip")
SHARD_TOKENS_DIR = "tokens"  # under the state dir: per-file tokens that shards are built from
PREFETCH_BATCHES = 2


# -- command line -------------------------------------------------------------------------------
def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `transcode {encode,decode,roundtrip}` to the `wavtok` parser."""
    from codec.model import DEFAULT_MODEL

    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("in_dir", metavar="IN_DIR", help="input tree")
    common.add_argument("out_dir", metavar="OUT_DIR", help="output tree (created; mirrors IN_DIR)")
    common.add_argument("--model", default=DEFAULT_MODEL, help="model dir or name (%(default)s)")
    common.add_argument("--device", default="cpu", help="torch device, e.g. cuda (default: cpu)")
    common.add_argument("--batch-size", type=int, default=16, help="files per model call (16)")
    common.add_argument(
        "--max-batch-seconds",
        type=float,
        default=1200.0,
        help="cap on batch size x longest file, in seconds of audio (1200)",
    )
    common.add_argument(
        "--workers", type=int, default=2, help="data-loading threads; 0 loads inline (2)"
    )
    common.add_argument(
        "--decode-dtype",
        choices=DTYPE_NAMES,
        default="float32",
        help="decode precision: bfloat16 on CUDA or a bf16 CPU (2x faster here); "
        "encoding is always float32 (float32)",
    )
    common.add_argument("--strict", action="store_true", help="exit non-zero when any file fails")
    common.add_argument("--quiet", action="store_true", help="no progress bar")
    common.add_argument(
        "--ray",
        nargs="?",
        const="local",
        default=None,
        metavar="ADDRESS",
        help="run as a Ray Data pipeline on a local instance or at ADDRESS (write --ray=ADDRESS)",
    )
    common.add_argument(
        "--actors", type=int, default=0, help="Ray model actors (default: GPUs with cuda, else 1)"
    )

    parser = subparsers.add_parser(
        "transcode", help="transcode whole directory trees (resumable, batched, Ray)"
    )
    modes = parser.add_subparsers(dest="transcode_mode", metavar="MODE", required=True)
    helps = {
        "encode": "audio tree -> .wtok tree (or Parquet shards)",
        "decode": ".wtok tree -> .wav tree",
        "roundtrip": "audio tree -> tokens -> .wav tree",
    }
    from codec.cli import add_search_argument

    for mode in MODES:
        p = modes.add_parser(mode, parents=[common], help=helps[mode])
        if mode != "decode":
            add_search_argument(p)
        if mode == "encode":
            p.add_argument(
                "--shards", action="store_true", help="write Parquet shards instead of .wtok files"
            )
            p.add_argument("--shard-size", type=int, default=10000, help="rows per shard (10000)")
        p.set_defaults(func=run)


def _check_args(args: argparse.Namespace) -> tuple[Path, Path]:
    in_dir, out_dir = Path(args.in_dir), Path(args.out_dir)
    if not in_dir.exists():
        raise FileNotFoundError(f"{in_dir}: no such directory")
    if not in_dir.is_dir():
        raise NotADirectoryError(f"{in_dir}: not a directory")
    if out_dir.exists() and not out_dir.is_dir():
        raise NotADirectoryError(f"{out_dir}: exists and is not a directory")
    if out_dir.resolve() == in_dir.resolve():
        raise ValueError("OUT_DIR must differ from IN_DIR")
    for name in ("batch_size", "max_batch_seconds"):
        if getattr(args, name) <= 0:
            raise ValueError(f"--{name.replace('_', '-')} must be positive")
    if args.workers < 0 or args.actors < 0:
        raise ValueError("--workers and --actors must be >= 0")
    if getattr(args, "shards", False) and args.shard_size < 1:
        raise ValueError("--shard-size must be positive")
    return in_dir, out_dir


# -- running -------------------------------------------------------------------------------------
def _model_fingerprint(model_dir: Path) -> str:
    """sha256 over the model's config and weights: outputs of other weights are not reused."""
    from codec.model import CONFIG_FILE, WEIGHTS_FILE

    h = hashlib.sha256()
    for name in (CONFIG_FILE, WEIGHTS_FILE):
        with open(model_dir / name, "rb") as f:
            while chunk := f.read(1 << 20):
                h.update(chunk)
    return h.hexdigest()


def _check_device(device: str) -> None:
    import torch

    dev = torch.device(device)  # RuntimeError on a malformed name
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {device}: CUDA is not available on this machine")


def run_local(
    batches: list[list[Item]],
    mode: str,
    model_dir: Path,
    device: str,
    workers: int,
    sink: Sink,
    decode_dtype: str = "float32",
    search: SearchSettings | None = None,
) -> None:
    """Load with `workers` threads (`PREFETCH_BATCHES` batches ahead) while the model runs."""
    from functools import partial

    from codec.model import Codec
    from codec.transcode_core import Processor, load_item

    process = Processor(Codec.from_pretrained(model_dir, device=device), mode, decode_dtype, search)
    load = partial(load_item, mode=mode, info=process.info)
    if workers == 0:
        for batch in batches:
            sink.write(process([load(it) for it in batch]))
        return
    pool = ThreadPoolExecutor(workers, thread_name_prefix="wavtok-load")
    try:
        todo: Iterator[list[Item]] = iter(batches)
        pending: deque = deque()

        def submit() -> None:
            batch = next(todo, None)
            if batch is not None:
                pending.append([pool.submit(load, it) for it in batch])

        for _ in range(PREFETCH_BATCHES):
            submit()
        while pending:
            futures = pending.popleft()
            submit()
            sink.write(process([f.result() for f in futures]))
    except BaseException:
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown()


def _progress(total_s: float, n_files: int, quiet: bool):
    """A tqdm bar on stderr counting audio hours, with files and speed as the postfix."""
    from tqdm import tqdm

    bar = tqdm(
        total=round(total_s / 3600, 6),
        disable=quiet or n_files == 0,
        file=sys.stderr,
        mininterval=0.5,
        bar_format="{desc} {percentage:3.0f}%|{bar:24}| {n:.3f}/{total:.3f} h audio "
        "[{elapsed}<{remaining}{postfix}]",
        desc="transcode",
    )
    start, state = time.monotonic(), {"files": 0, "s": 0.0}

    def update(results) -> None:
        done_s = sum(r.item.duration_s for r in results)
        state["files"] += len(results)
        state["s"] += done_s
        speed = state["s"] / max(time.monotonic() - start, 1e-9)
        bar.set_postfix_str(f"{state['files']}/{n_files} files, {speed:.0f}x realtime")
        bar.update(round(done_s / 3600, 6))

    return bar, update


def _summary(stats: Stats, mode: str, wall_s: float, extra: dict, errors_path: Path) -> dict:
    """Print the end-of-job report to stdout; returns it as a dict (for summary.json)."""
    hours, failed = stats.audio_s / 3600, stats.errors + stats.known_bad
    summary = {
        "mode": mode,
        "files_found": stats.found,
        "files_done": stats.done,
        "files_skipped": stats.skipped,
        "errors": stats.errors,
        "errors_known": stats.known_bad,
        "audio_hours": round(hours, 6),
        "audio_hours_skipped": round(stats.skipped_s / 3600, 6),
        "tokens": stats.tokens,
        "bytes_written": stats.bytes_out,
        "wall_s": round(wall_s, 3),
        "audio_hours_per_hour": round(stats.audio_s / wall_s, 3) if wall_s > 0 else 0.0,
        **extra,
    }
    lines = [
        f"transcode {mode}: {stats.found} files found, {stats.done} done, {stats.skipped} "
        f"skipped (already done), {failed} errors ({stats.known_bad} known from earlier runs)",
        f"audio: {hours:.4f} h transcoded ({stats.skipped_s / 3600:.4f} h skipped), "
        f"{stats.tokens} tokens, {stats.bytes_out} bytes written",
        f"time: {wall_s:.1f} s wall, {summary['audio_hours_per_hour']:.1f} audio-hours/hour",
    ]
    if "shards" in extra:
        lines.append(f"shards: {extra['shards']} ({extra['shards_written']} written)")
    if failed:
        lines.append(f"errors: see {errors_path}")
    print("\n".join(lines), flush=True)
    return summary


def _job(
    args: argparse.Namespace,
    journal: Journal,
    model_dir: Path,
    info: ModelInfo,
    job: dict,
    search: SearchSettings | None = None,
) -> dict:
    """Plan, run and report one job whose state directory `journal` holds; returns the summary.
    `search`: how tokens are chosen when encoding (`codec.search`), None for the nearest."""
    from codec import transcode_core as core

    start, mode, out_dir = time.monotonic(), args.transcode_mode, Path(args.out_dir)
    shards = getattr(args, "shards", False)
    core.remove_temp_files(out_dir)  # safe: the journal's lock keeps other jobs out
    prefix = f"{core.STATE_DIR}/{SHARD_TOKENS_DIR}" if shards else ""
    items = make_items(discover(Path(args.in_dir), out_dir, mode), mode, prefix)
    with ThreadPoolExecutor(max(1, args.workers)) as pool:
        states = list(pool.map(lambda it: probe(it, mode, out_dir, job, journal), items))
    todo = [it for it, s in zip(items, states, strict=True) if s == "todo"]
    skipped = [it for it, s in zip(items, states, strict=True) if s == "skip"]
    stats = core.Stats(len(items), skipped=len(skipped), known_bad=states.count("bad"))
    stats.skipped_s = sum(it.duration_s for it in skipped)

    bar, update = _progress(sum(it.duration_s for it in todo), len(todo), args.quiet)
    sink = core.Sink(out_dir, journal, job, info, stats, update)
    try:
        conflicts = [it for it in todo if it.conflict]
        if conflicts:
            sink.write([core.Result(it, error=it.conflict, permanent=True) for it in conflicts])
        todo = [it for it in todo if not it.conflict]
        batches = make_batches(todo, args.batch_size, args.max_batch_seconds)
        if args.ray is not None:
            from codec.transcode_ray import run_ray

            run_ray(batches, mode, model_dir, info, args, sink, search)
        else:
            run_local(
                batches,
                mode,
                model_dir,
                args.device,
                args.workers,
                sink,
                args.decode_dtype,
                search,
            )
    except KeyboardInterrupt:
        bar.close()
        print("transcode: interrupted; rerun the same command to resume", file=sys.stderr)
        wall = time.monotonic() - start
        _summary(stats, mode, wall, {"interrupted": True}, journal.errors_path)
        raise
    bar.close()

    extra: dict = {}
    if shards:
        from codec.shards import ShardEntry, write_shards

        records = {it.rel: journal.manifest[it.rel] for it in skipped} | sink.written
        entries = [
            ShardEntry(it.rel, out_dir / it.out_rel, records[it.rel]["output_sha256"])
            for it in items
            if it.rel in records
        ]
        names, written = write_shards(out_dir, entries, args.shard_size)
        extra = {"shards": len(names), "shards_written": written}
    if stats.other_models:
        names = ", ".join(sorted(stats.other_models))
        print(f"wavtok: warning: some token files were written by {names}", file=sys.stderr)
    summary = _summary(stats, mode, time.monotonic() - start, extra, journal.errors_path)
    core.atomic_write(
        journal.state_dir / core.SUMMARY_FILE, (json.dumps(summary, indent=2) + "\n").encode()
    )
    return summary


def run(args: argparse.Namespace) -> int:
    """Run `wavtok transcode MODE`; returns the exit status (1 on errors with --strict)."""
    from codec.cli import search_settings
    from codec.config import CodecConfig
    from codec.model import CONFIG_FILE, codebook_id_of, resolve_model_dir
    from codec.transcode_core import STATE_DIR, Journal, ModelInfo

    _, out_dir = _check_args(args)
    if args.ray is None:  # with Ray, the actors' machines need the device, not this one
        _check_device(args.device)
    model_dir = resolve_model_dir(args.model)
    config = CodecConfig.from_yaml(model_dir / CONFIG_FILE)
    info = ModelInfo.from_config(config, codebook_id_of(model_dir))
    job = {
        "mode": args.transcode_mode,
        "model": info.name,
        "model_sha256": _model_fingerprint(model_dir),
    }
    # Checked here, before any file is read; and tokens chosen another way are other outputs,
    # so a job with other search settings does not take these as done.
    search = search_settings(args, config)
    if search is not None:
        job["search"] = search.candidates
        if search.beam != 1:
            job["beam"] = search.beam
        if search.refine:
            job["refine"] = search.refine
    out_dir.mkdir(parents=True, exist_ok=True)
    journal = Journal(out_dir / STATE_DIR)
    try:
        summary = _job(args, journal, model_dir, info, job, search)
    finally:
        journal.close()
    failed = summary["errors"] + summary["errors_known"]
    if args.strict and failed:
        raise RuntimeError(f"{failed} files failed (--strict); see {journal.errors_path}")
    return 0
