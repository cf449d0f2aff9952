"""The `.wtok` token file: a versioned, self-describing container for one stream of token ids.

Layout (all integers little-endian):

    offset  size  field
    0       4     magic b"WTOK"
    4       1     format version (currently 1)
    5       4     header length H in bytes (uint32)
    9       H     UTF-8 JSON header (see `TokenHeader`), including the payload's CRC-32
    9+H     ...   codes, bit-packed MSB-first at `bits_per_code` bits each, zero-padded to a byte

A 4096-entry codebook packs at 12 bits per code, so 75 codes/s cost 900 bit/s plus the header.
"""

from __future__ import annotations

import json
import os
import secrets
import struct
import zlib
from pathlib import Path

import numpy as np
from pydantic import BaseModel, ConfigDict, ValidationError

MAGIC = b"WTOK"
VERSION = 1
EXTENSION = ".wtok"
_PREFIX = struct.Struct("<4sBI")
_MAX_HEADER = 1 << 20


class TokenFileError(ValueError):
    """A token file that is truncated, corrupt, of an unknown version, or not a token file."""


class TokenHeader(BaseModel):
    """What a decoder needs besides the ids. `num_samples` is the original length at
    `sample_rate`; decoding trims to it. `codebook_id` is the encoding model's
    `Codec.codebook_id`: a model with another codebook would decode the ids to the wrong sounds
    (files written before it existed have none, and are checked without it)."""

    model_config = ConfigDict(extra="allow")

    model: str
    sample_rate: int
    frame_rate: float
    codebook_size: int
    num_samples: int
    num_frames: int = 0
    bits_per_code: int = 0
    crc32: int = 0
    codebook_id: str | None = None

    @classmethod
    def for_model(cls, model, num_samples: int) -> TokenHeader:
        """The header for `num_samples` input samples encoded by `model` (a `Codec`, or anything
        with its `name`, `sample_rate`, `frame_rate`, `codebook_size` and `codebook_id`)."""
        return cls(
            model=model.name,
            sample_rate=model.sample_rate,
            frame_rate=model.frame_rate,
            codebook_size=model.codebook_size,
            num_samples=int(num_samples),
            codebook_id=model.codebook_id,
        )

    def mismatch(self, model, num_frames: int) -> str | None:
        """Why `model` (a `Codec`, or anything with the attributes `for_model` reads plus
        `hop_length`) cannot decode these `num_frames` ids, or None when it can."""
        name = repr(model.name)
        if self.codebook_size != model.codebook_size:
            return (
                f"token file uses a {self.codebook_size}-entry codebook (model {self.model!r}) "
                f"but model {name} has {model.codebook_size}"
            )
        if self.sample_rate != model.sample_rate:
            return (
                f"token file is at {self.sample_rate} Hz but model {name} "
                f"runs at {model.sample_rate} Hz"
            )
        if abs(self.frame_rate - model.frame_rate) > 1e-6:
            return (
                f"token file has {self.frame_rate:g} frames/s but model {name} "
                f"has {model.frame_rate:g}"
            )
        if self.codebook_id is not None and self.codebook_id != model.codebook_id:
            return (
                f"token file was encoded with codebook {self.codebook_id} (model {self.model!r}) "
                f"but model {name} has codebook {model.codebook_id}; decode with the model "
                "that encoded it"
            )
        if num_frames < 1:
            return "token file holds no frames"
        hop = model.hop_length
        if not (num_frames - 1) * hop < self.num_samples <= num_frames * hop:
            return (
                f"token file header is inconsistent: {self.num_samples} samples "
                f"for {num_frames} frames of {hop}"
            )
        return None

    def duration_s(self) -> float:
        return self.num_samples / self.sample_rate


def bits_for(codebook_size: int) -> int:
    """Bits per packed code for a codebook of `codebook_size` entries."""
    return max(1, int(codebook_size - 1).bit_length())


def pack_codes(codes: np.ndarray, bits: int) -> bytes:
    """(F,) non-negative ids < 2**bits -> MSB-first packed bytes."""
    codes = np.asarray(codes, dtype=np.uint64).reshape(-1)
    shifts = np.arange(bits - 1, -1, -1, dtype=np.uint64)
    bitmat = ((codes[:, None] >> shifts[None, :]) & np.uint64(1)).astype(np.uint8)
    return np.packbits(bitmat.reshape(-1)).tobytes()


def unpack_codes(payload: bytes, bits: int, count: int) -> np.ndarray:
    """Inverse of `pack_codes`: packed bytes -> (count,) int64 ids."""
    flat = np.unpackbits(np.frombuffer(payload, dtype=np.uint8))[: count * bits]
    weights = (np.uint64(1) << np.arange(bits - 1, -1, -1, dtype=np.uint64)).astype(np.int64)
    return flat.reshape(count, bits).astype(np.int64) @ weights


def dumps(codes, header: TokenHeader) -> bytes:
    """(F,) or (1, F) ids plus a header -> the bytes of a token file."""
    ids = np.asarray(codes.cpu() if hasattr(codes, "cpu") else codes).reshape(-1).astype(np.int64)
    if ids.size and (ids.min() < 0 or ids.max() >= header.codebook_size):
        raise ValueError(f"code ids must lie in [0, {header.codebook_size})")
    bits = bits_for(header.codebook_size)
    payload = pack_codes(ids, bits)
    full = header.model_copy(
        update={"num_frames": int(ids.size), "bits_per_code": bits, "crc32": zlib.crc32(payload)}
    )
    head = json.dumps(full.model_dump(), separators=(",", ":")).encode("utf-8")
    return _PREFIX.pack(MAGIC, VERSION, len(head)) + head + payload


def loads(data: bytes) -> tuple[np.ndarray, TokenHeader]:
    """Bytes of a token file -> ((F,) int64 ids, header). Raises TokenFileError when invalid."""
    if len(data) < _PREFIX.size:
        raise TokenFileError("not a token file: too short for the header")
    magic, version, head_len = _PREFIX.unpack_from(data)
    if magic != MAGIC:
        raise TokenFileError("not a token file: bad magic bytes")
    if version != VERSION:
        raise TokenFileError(
            f"unsupported token file version {version} (this build reads {VERSION})"
        )
    if head_len > _MAX_HEADER or len(data) < _PREFIX.size + head_len:
        raise TokenFileError("truncated token file: header incomplete")
    try:
        raw = json.loads(data[_PREFIX.size : _PREFIX.size + head_len].decode("utf-8"))
        header = TokenHeader.model_validate(raw)
    except (UnicodeDecodeError, json.JSONDecodeError, ValidationError) as e:
        raise TokenFileError(f"corrupt token file header ({type(e).__name__})") from None
    bits = header.bits_per_code
    if bits != bits_for(header.codebook_size) or header.num_frames < 0:
        raise TokenFileError("corrupt token file header (inconsistent fields)")
    payload = data[_PREFIX.size + head_len :]
    expected = (header.num_frames * bits + 7) // 8
    if len(payload) < expected:
        raise TokenFileError(
            f"truncated token file: {len(payload)} of {expected} payload bytes present"
        )
    if len(payload) > expected:
        raise TokenFileError("corrupt token file: trailing bytes after the codes")
    if zlib.crc32(payload) != header.crc32:
        raise TokenFileError("corrupt token file: checksum mismatch")
    codes = unpack_codes(payload, bits, header.num_frames)
    if codes.size and codes.max() >= header.codebook_size:
        raise TokenFileError("corrupt token file: code id beyond the codebook")
    return codes, header


def atomic_write(path: str | Path, data: bytes) -> None:
    """Write `data` to `path` via a temporary file ".<name>.<pid>.<8 hex>.tmp" in the same
    directory and a rename, so a reader (or a rerun after a crash) sees the old file or the new
    one, never half of one."""
    path = Path(path)
    tmp = path.parent / f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
    # Not mkstemp: its 0600 mode would survive the rename; 0666 lets the umask decide, as for
    # any ordinary file.
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def save(path: str | Path, codes, header: TokenHeader) -> int:
    """Write a token file atomically (temporary file, then rename). Returns its size in bytes."""
    data = dumps(codes, header)
    atomic_write(path, data)
    return len(data)


def load(path: str | Path) -> tuple[np.ndarray, TokenHeader]:
    """Read a token file -> ((F,) int64 ids, header)."""
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        raise TokenFileError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise TokenFileError(f"{path}: is a directory") from None
    try:
        return loads(data)
    except TokenFileError as e:
        raise TokenFileError(f"{path}: {e}") from None
