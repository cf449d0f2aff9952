"""Pieces shared by the local and the Ray transcoder: work items, loading, model compute, journal.

A job turns each input file (audio, or a `.wtok` token file for `decode`) into one output
payload: token-file bytes (`encode`) or 16-bit PCM WAV bytes at the model's rate (`decode`,
`roundtrip`). Workers load and compute; only the driver writes files (atomically) and appends
to the manifest, so both paths produce byte-identical outputs and the same journal.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from codec import precision, tokenfile
from codec.audio import AudioError, encode_audio_bytes, load_mono
from codec.config import CodecConfig
from codec.search import SearchSettings, encode_with
from codec.transcode import MODES

STATE_DIR = ".wavtok-transcode"
MANIFEST_FILE = "manifest.jsonl"
ERRORS_FILE = "errors.jsonl"
SUMMARY_FILE = "summary.json"
LOCK_FILE = "lock"
# Temporary files of `atomic_write` and `tokenfile.save`: ".<name>.<pid>.<8 hex>.tmp".
_TMP_NAME = re.compile(r"^\..+\.\d+\.[0-9a-f]{8}\.tmp$")
_HASH_CHUNK = 1 << 20
# Audio decoded from memory is named by object address in libsndfile's messages: noise that
# would make error records differ from run to run.
_BYTES_NAME = re.compile(r"^<bytes>: |Error opening <_io\.BytesIO object at 0x[0-9a-f]+>: ")


@dataclass(frozen=True)
class ModelInfo:
    """What loaders and token headers need from a model, without its weights."""

    name: str
    sample_rate: int
    frame_rate: float
    hop_length: int
    codebook_size: int
    codebook_id: str

    @classmethod
    def from_config(cls, cfg: CodecConfig, codebook_id: str) -> ModelInfo:
        return cls(
            cfg.name,
            cfg.sample_rate,
            cfg.frame_rate,
            cfg.hop_length,
            cfg.quantizer.codebook_size,
            codebook_id,
        )

    def header(self, num_samples: int) -> tokenfile.TokenHeader:
        """The token header for an input of `num_samples` samples at `sample_rate`."""
        return tokenfile.TokenHeader.for_model(self, num_samples)


@dataclass
class Item:
    """One input file: `rel` (POSIX, relative to IN_DIR) -> `out_rel` (relative to OUT_DIR)."""

    index: int
    rel: str
    src: str
    out_rel: str
    duration_s: float = 0.0  # estimate (file header), used for bucketing and progress
    conflict: str | None = None  # set when another input already maps to `out_rel`


@dataclass
class Loaded:
    """A loaded input: `data` is (T,) float32 samples at the model rate, or (F,) int64 codes."""

    item: Item
    input_sha256: str = ""
    data: np.ndarray | None = None
    num_samples: int = 0
    error: str | None = None
    permanent: bool = False  # a property of the file (retrying cannot help), not of the run
    source_model: str = ""


@dataclass
class Result:
    """A computed output: `payload` is the whole output file's bytes."""

    item: Item
    input_sha256: str = ""
    payload: bytes = b""
    num_samples: int = 0
    num_frames: int = 0
    error: str | None = None
    permanent: bool = False
    source_model: str = ""


# -- files ---------------------------------------------------------------------------------------
def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_HASH_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def atomic_write(path: str | Path, data: bytes) -> None:
    """`tokenfile.atomic_write`, creating the parent folders of a mirrored tree first."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    tokenfile.atomic_write(path, data)


def remove_temp_files(root: Path) -> int:
    """Delete temporary files left in `root` by a killed writer; returns how many."""
    removed = 0
    for dirpath, _, files in os.walk(root):
        for name in files:
            if _TMP_NAME.match(name):
                Path(dirpath, name).unlink(missing_ok=True)
                removed += 1
    return removed


# -- loading (runs in worker threads or Ray tasks) -------------------------------------------------
def load_item(item: Item, mode: str, info: ModelInfo) -> Loaded:
    """Read, checksum and decode one input. Never raises: a bad file becomes `error`."""
    try:
        raw = Path(item.src).read_bytes()
    except OSError as e:
        return Loaded(item, error=f"cannot read: {e.strerror or e}")
    out = Loaded(item, input_sha256=hashlib.sha256(raw).hexdigest())
    try:
        if mode == "decode":
            codes, header = tokenfile.loads(raw)
            out.error = header.mismatch(info, int(codes.size))
            out.permanent = out.error is not None
            out.data, out.num_samples, out.source_model = codes, header.num_samples, header.model
            return out
        wav, _ = load_mono(raw, info.sample_rate)
    except (AudioError, tokenfile.TokenFileError) as e:
        out.error, out.permanent = _BYTES_NAME.sub("", str(e)), True
        return out
    except Exception as e:  # one strange file must not end a corpus-sized job
        out.error = f"{type(e).__name__}: {' '.join(str(e).split())}"
        return out
    out.num_samples = int(wav.numel())
    if out.num_samples < info.hop_length:
        out.error = (
            f"too short: {out.num_samples} samples at {info.sample_rate} Hz, "
            f"less than one frame ({info.hop_length})"
        )
        out.permanent = True
        return out
    out.data = wav.numpy()
    return out


# -- model compute (runs in the driver or a Ray actor) ------------------------------------------
class Processor:
    """Turns a batch of `Loaded` into `Result`s with one padded model call per batch.

    Codes do not depend on what else is in the batch (`Codec.encode` masks by length), so any
    batching gives the same token files. A batch that fails is retried item by item, so one bad
    item costs only itself.
    """

    def __init__(
        self,
        codec: Any,
        mode: str,
        decode_dtype: str = "float32",
        search: SearchSettings | None = None,
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}; expected one of {', '.join(MODES)}")
        self.codec, self.mode = codec, mode
        # How encoding chooses tokens (codec/search.py, from `settings_from` for this codec's
        # config); None: the nearest code.
        self.search = search
        self.info = ModelInfo.from_config(codec.config, codec.codebook_id)
        # Decoding only (codec/precision.py): encoded tokens never depend on it.
        self.decode_dtype = precision.checked_decode_dtype(decode_dtype, codec)

    def __call__(self, batch: list[Loaded]) -> list[Result]:
        results = {
            id(x): Result(x.item, x.input_sha256, error=x.error, permanent=x.permanent)
            for x in batch
            if x.error is not None
        }
        good = [x for x in batch if x.error is None]
        if good:
            try:
                done = self._compute(good)
            except (RuntimeError, ValueError):
                done = []
                for x in good:
                    try:
                        done += self._compute([x])
                    except (RuntimeError, ValueError) as e:
                        msg = f"model failed: {type(e).__name__}: {' '.join(str(e).split())}"
                        done.append(Result(x.item, x.input_sha256, error=msg))
            results.update({id(x): r for x, r in zip(good, done, strict=True)})
        return [results[id(x)] for x in batch]

    def _compute(self, batch: list[Loaded]) -> list[Result]:
        sizes = [x.num_samples for x in batch]
        if self.mode == "decode":
            codes = [x.data for x in batch]
        else:
            codes = self._encode([x.data for x in batch])
        if self.mode == "encode":
            payloads = [
                tokenfile.dumps(c, self.info.header(n)) for c, n in zip(codes, sizes, strict=True)
            ]
        else:
            audio = self._decode(codes, sizes)
            rate = self.info.sample_rate
            payloads = [encode_audio_bytes(torch.from_numpy(a), rate, "WAV") for a in audio]
        return [
            Result(x.item, x.input_sha256, p, x.num_samples, len(c), source_model=x.source_model)
            for x, p, c in zip(batch, payloads, codes, strict=True)
        ]

    def _encode(self, wavs: list[np.ndarray]) -> list[np.ndarray]:
        """(T_i,) samples -> (F_i,) int64 codes, one padded (B, 1, max T) model call."""
        lengths = torch.tensor([w.shape[0] for w in wavs])
        batch = torch.zeros(len(wavs), 1, int(lengths.max()))
        for i, w in enumerate(wavs):
            batch[i, 0, : w.shape[0]] = torch.from_numpy(w)
        codes, code_lengths = encode_with(
            self.codec, batch.to(self.codec.device), lengths, self.search
        )
        codes = codes.cpu().numpy()
        return [codes[i, :n] for i, n in enumerate(code_lengths.tolist())]

    def _decode(self, codes: list[np.ndarray], num_samples: list[int]) -> list[np.ndarray]:
        """(F_i,) codes -> (num_samples_i,) float32 samples, one padded (B, max F) model call."""
        lengths = torch.tensor([c.shape[0] for c in codes])
        batch = torch.zeros(len(codes), int(lengths.max()), dtype=torch.long)
        for i, c in enumerate(codes):
            batch[i, : c.shape[0]] = torch.from_numpy(np.asarray(c, dtype=np.int64))
        with precision.decode_autocast(self.decode_dtype, self.codec.device):
            audio, sample_lengths = self.codec.decode(batch, lengths, torch.tensor(num_samples))
        audio = audio.float().cpu().numpy()
        return [audio[i, 0, :n] for i, n in enumerate(sample_lengths.tolist())]


# -- journal and writer (driver only) ------------------------------------------------------------
def read_jsonl(path: Path) -> dict[str, dict]:
    """The last record per `input` in a JSON-lines journal; torn or foreign lines are ignored."""
    records: dict[str, dict] = {}
    if not path.is_file():
        return records
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                continue  # e.g. the last line of a run killed mid-append
            if isinstance(rec, dict) and isinstance(rec.get("input"), str):
                records[rec["input"]] = rec
    return records


def _open_append(path: Path):
    f = open(path, "ab")  # noqa: SIM115 - held open for the whole job
    if f.tell() > 0:
        with open(path, "rb") as r:
            r.seek(-1, os.SEEK_END)
            if r.read(1) != b"\n":
                f.write(b"\n")  # end a torn line so the next record stays parseable
    return f


class Journal:
    """The job's state directory: an exclusive lock plus the append-only manifest and error log.

    Each `commit` is flushed and fsync'd, so a killed run loses at most the batch in flight.
    """

    def __init__(self, state_dir: Path) -> None:
        state_dir.mkdir(parents=True, exist_ok=True)
        self.state_dir = state_dir
        self.manifest_path = state_dir / MANIFEST_FILE
        self.errors_path = state_dir / ERRORS_FILE
        self._lock = open(state_dir / LOCK_FILE, "a")  # noqa: SIM115
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._lock.close()
            raise RuntimeError(
                f"{state_dir.parent}: another transcode job is writing here"
            ) from None
        self.manifest = read_jsonl(self.manifest_path)
        self.errors = read_jsonl(self.errors_path)
        self._files = {"m": _open_append(self.manifest_path), "e": _open_append(self.errors_path)}

    def commit(self, records: Iterable[dict], errors: Iterable[dict]) -> None:
        for key, recs in (("m", records), ("e", errors)):
            lines = [json.dumps(r, separators=(",", ":")) + "\n" for r in recs]
            if lines:
                f = self._files[key]
                f.write("".join(lines).encode("utf-8"))
                f.flush()
                os.fsync(f.fileno())

    def close(self) -> None:
        for f in self._files.values():
            f.close()
        self._lock.close()  # releases the flock


@dataclass
class Stats:
    """Counts for the summary; durations in seconds of audio."""

    found: int = 0
    done: int = 0
    skipped: int = 0
    skipped_s: float = 0.0
    known_bad: int = 0
    errors: int = 0
    audio_s: float = 0.0
    tokens: int = 0
    bytes_out: int = 0
    other_models: set[str] = field(default_factory=set)


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


class Sink:
    """Writes results under `out_dir` (atomically), then journals them: the only writer."""

    def __init__(
        self,
        out_dir: Path,
        journal: Journal,
        job: dict[str, str],
        info: ModelInfo,
        stats: Stats,
        on_write: Callable[[list[Result]], None] | None = None,
    ) -> None:
        self.out_dir, self.journal, self.job, self.info = out_dir, journal, job, info
        self.stats, self.on_write = stats, on_write
        self.written: dict[str, dict] = {}  # input -> manifest record, this run

    def write(self, results: list[Result]) -> None:
        records, errors = [], []
        for r in results:
            base = {"input": r.item.rel, "input_sha256": r.input_sha256, **self.job}
            if r.error is not None:
                errors.append({**base, "error": r.error, "permanent": r.permanent, "time": _now()})
                continue
            atomic_write(self.out_dir / r.item.out_rel, r.payload)
            rate = self.info.sample_rate
            rec = {
                **base,
                "output": r.item.out_rel,
                "output_sha256": hashlib.sha256(r.payload).hexdigest(),
                "num_samples": r.num_samples,
                "num_frames": r.num_frames,
                "duration_s": round(r.num_samples / rate, 6),
                "time": _now(),
            }
            records.append(rec)
            self.written[r.item.rel] = rec
            self.stats.done += 1
            self.stats.audio_s += r.num_samples / rate
            self.stats.tokens += r.num_frames
            self.stats.bytes_out += len(r.payload)
            if r.source_model and r.source_model != self.info.name:
                self.stats.other_models.add(r.source_model)
        self.stats.errors += len(errors)
        self.journal.commit(records, errors)
        if self.on_write is not None:
            self.on_write(results)
