"""Parquet shards of token streams, for language-model training.

Shard k (`shard-0000k.parquet` in OUT_DIR) holds rows k*N .. k*N+N-1 of all successfully
encoded inputs sorted by relative path, so the shards depend only on the corpus, the model and
N, never on batching, workers or Ray. Columns (one row per input file):

    path         string         input path relative to IN_DIR (POSIX, with its extension)
    codes        list<uint16>   token ids, (num_frames,)
    num_frames   int32          len(codes)
    num_samples  int64          input length at the model's sample rate
    sample_rate  int32          Hz
    frame_rate   float64        token frames per second
    model        string         model name
    duration     float64        num_samples / sample_rate, in seconds

`OUT_DIR/.wavtok-transcode/shards.json` records what each shard holds, so an unchanged shard is
not rewritten on a rerun.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from codec import tokenfile
from codec.transcode_core import STATE_DIR, atomic_write, sha256_file

INDEX_FILE = "shards.json"
SHARD_NAME = "shard-{:05d}.parquet"
_SHARD_RE = re.compile(r"^shard-\d{5,}\.parquet$")
SCHEMA = pa.schema(
    [
        ("path", pa.string()),
        ("codes", pa.list_(pa.uint16())),
        ("num_frames", pa.int32()),
        ("num_samples", pa.int64()),
        ("sample_rate", pa.int32()),
        ("frame_rate", pa.float64()),
        ("model", pa.string()),
        ("duration", pa.float64()),
    ]
)


@dataclass(frozen=True)
class ShardEntry:
    """One row-to-be: an input's relative path and its (already written) token file."""

    path: str
    token_file: Path
    token_sha256: str


def shard_bytes(entries: list[ShardEntry]) -> bytes:
    """The Parquet file for `entries`, in the given order (token files are read here)."""
    cols: dict[str, list] = {name: [] for name in SCHEMA.names}
    codes: list[np.ndarray] = []
    for e in entries:
        ids, header = tokenfile.load(e.token_file)
        if header.codebook_size > 1 << 16:
            raise ValueError(f"{e.path}: codebook of {header.codebook_size} ids exceeds uint16")
        codes.append(ids.astype(np.uint16))
        cols["path"].append(e.path)
        cols["num_frames"].append(int(ids.size))
        cols["num_samples"].append(header.num_samples)
        cols["sample_rate"].append(header.sample_rate)
        cols["frame_rate"].append(header.frame_rate)
        cols["model"].append(header.model)
        cols["duration"].append(header.duration_s())
    offsets = np.concatenate([[0], np.cumsum([c.size for c in codes])]).astype(np.int32)
    values = np.concatenate(codes) if codes else np.zeros(0, np.uint16)
    arrays = {name: pa.array(cols[name], type=SCHEMA.field(name).type) for name in cols}
    arrays["codes"] = pa.ListArray.from_arrays(pa.array(offsets), pa.array(values))
    table = pa.table([arrays[name] for name in SCHEMA.names], schema=SCHEMA)
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, compression="zstd")
    return sink.getvalue().to_pybytes()


def write_shards(
    out_dir: Path, entries: list[ShardEntry], shard_size: int
) -> tuple[list[str], int]:
    """Write shards for `entries` (sorted here by path) into `out_dir`; shards whose content is
    unchanged since the last run are kept, stale ones deleted. Returns (shard names, written)."""
    entries = sorted(entries, key=lambda e: e.path)
    index_path = out_dir / STATE_DIR / INDEX_FILE
    try:
        old = json.loads(index_path.read_text(encoding="utf-8"))["shards"]
        old = {s["file"]: s for s in old}
    except (OSError, ValueError, KeyError, TypeError):
        old = {}
    shards, written = [], 0
    for k, start in enumerate(range(0, len(entries), shard_size)):
        chunk = entries[start : start + shard_size]
        name = SHARD_NAME.format(k)
        inputs = [[e.path, e.token_sha256] for e in chunk]
        prev, path = old.get(name), out_dir / name
        if not (
            prev
            and prev.get("inputs") == inputs
            and path.is_file()
            and sha256_file(path) == prev.get("sha256")
        ):
            data = shard_bytes(chunk)
            atomic_write(path, data)
            prev = {"file": name, "sha256": hashlib.sha256(data).hexdigest(), "inputs": inputs}
            written += 1
        shards.append(prev)
    names = {s["file"] for s in shards}
    for stale in out_dir.iterdir():
        if _SHARD_RE.match(stale.name) and stale.name not in names:
            stale.unlink()
    index = (json.dumps({"shard_size": shard_size, "shards": shards}, indent=1) + "\n").encode()
    if not index_path.is_file() or index_path.read_bytes() != index:
        atomic_write(index_path, index)
    return sorted(names), written
