"""Planning a transcode job: which files, where their outputs go, what is done, what batches.

Light on imports (no torch) so that `wavtok` builds its parser quickly.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from codec.transcode_core import Item, Journal

BUCKET_WINDOW = 16  # batches' worth of files sorted by length together


def discover(in_dir: Path, out_dir: Path, mode: str) -> list[tuple[str, Path]]:
    """Inputs under `in_dir` as sorted (POSIX relative path, path) pairs.

    Hidden files and directories (temporaries, our state dir), an `out_dir` nested inside
    `in_dir` and any nested tree that holds a job's state dir (another job's output) are not
    inputs.
    """
    from codec.audio import AUDIO_EXTENSIONS
    from codec.tokenfile import EXTENSION
    from codec.transcode_core import STATE_DIR

    exts = (EXTENSION,) if mode == "decode" else AUDIO_EXTENSIONS
    out_abs = out_dir.resolve()
    found = []
    for root, dirs, files in os.walk(in_dir):
        if STATE_DIR in dirs and Path(root) != in_dir:
            dirs[:] = []  # the output tree of another job, not more input
            continue
        dirs[:] = [d for d in dirs if not d.startswith(".") and Path(root, d).resolve() != out_abs]
        for name in files:
            if not name.startswith(".") and Path(name).suffix.lower() in exts:
                path = Path(root, name)
                found.append((path.relative_to(in_dir).as_posix(), path))
    return sorted(found)


def make_items(found: list[tuple[str, Path]], mode: str, prefix: str = "") -> list[Item]:
    """One `Item` per input; a later input mapping to an output already taken gets `conflict`."""
    from codec.tokenfile import EXTENSION
    from codec.transcode_core import Item

    suffix = EXTENSION if mode == "encode" else ".wav"
    owner: dict[str, str] = {}
    items = []
    for i, (rel, path) in enumerate(found):
        out_rel = (Path(prefix) / Path(rel).with_suffix(suffix)).as_posix()
        item = Item(i, rel, str(path), out_rel)
        if out_rel in owner:
            item.conflict = f"output {out_rel} is already written for {owner[out_rel]}"
        else:
            owner[out_rel] = rel
        items.append(item)
    return items


def _estimate_seconds(path: str, mode: str) -> float:
    """Duration from the file header (0 when unreadable: loading will report why)."""
    try:
        if mode == "decode":
            from codec import tokenfile

            return tokenfile.load(path)[1].duration_s()
        import soundfile as sf

        info = sf.info(path)
        return info.frames / info.samplerate if info.samplerate > 0 else 0.0
    except Exception:
        return 0.0


OPTIONAL_JOB_KEYS = ("search", "beam", "refine")


def probe(item: Item, mode: str, out_dir: Path, job: dict, journal: Journal) -> str:
    """What to do with `item`: "skip" (finished earlier; input and output checksums match),
    "bad" (failed earlier on these exact bytes for a reason retrying cannot fix) or "todo".
    Sets `item.duration_s` (seconds) for bucketing and progress."""
    from codec.transcode_core import sha256_file

    # Keys a job sets only when not at their default (`search`, `beam`, `refine`): a record
    # without one must not match a job with it, nor a record with one a job without it.
    keys = set(job) | set(OPTIONAL_JOB_KEYS)
    same_job = lambda r: all(r.get(k) == job.get(k) for k in keys)  # noqa: E731
    rec = journal.manifest.get(item.rel)
    try:
        if rec and same_job(rec) and rec.get("output") == item.out_rel:
            out = out_dir / item.out_rel
            if (
                out.is_file()
                and sha256_file(out) == rec.get("output_sha256")
                and sha256_file(item.src) == rec.get("input_sha256")
            ):
                item.duration_s = float(rec.get("duration_s", 0.0))
                return "skip"
        err = journal.errors.get(item.rel)
        if (
            err
            and same_job(err)
            and err.get("permanent")
            and err.get("input_sha256")
            and sha256_file(item.src) == err["input_sha256"]
        ):
            return "bad"
    except OSError:
        pass  # unreadable now: loading will report it
    item.duration_s = _estimate_seconds(item.src, mode)
    return "todo"


def make_batches(
    items: list[Item], batch_size: int, max_batch_seconds: float, window: int = BUCKET_WINDOW
) -> list[list[Item]]:
    """Length-bucketed batches: files are sorted by duration within windows of `window`
    batches (so similar lengths share a batch and little is padding), then cut at `batch_size`
    files or `max_batch_seconds` of padded audio. Deterministic for a given input list."""
    batches: list[list[Item]] = []
    span = batch_size * window
    for start in range(0, len(items), span):
        chunk = sorted(items[start : start + span], key=lambda it: (it.duration_s, it.rel))
        batch: list[Item] = []
        for it in chunk:
            padded = (len(batch) + 1) * it.duration_s  # sorted: `it` is the longest so far
            if batch and (len(batch) >= batch_size or padded > max_batch_seconds):
                batches.append(batch)
                batch = []
            batch.append(it)
        if batch:
            batches.append(batch)
    return batches
