"""What the wavtok client puts on and reads off the wire: payloads, results and errors.

Pure functions over bytes, arrays and JSON, kept apart from the transport (`codec.client`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import httpx
import numpy as np

from codec.tokenfile import TokenHeader, dumps

AudioInput = bytes | str | Path
CodesInput = Any  # EncodeResult, token-file bytes, or a sequence / array of ids
PcmFormat = Literal["pcm16", "f32"]
TOKEN_TYPE = "application/octet-stream"
EXTENSION_TYPES = {
    ".wav": "audio/wav",
    ".flac": "audio/flac",
    ".ogg": "audio/ogg",
    ".opus": "audio/ogg",
    ".mp3": "audio/mpeg",
}


class WavtokAPIError(Exception):
    """An error answer: HTTP status (or WebSocket close code) and the server's message."""

    def __init__(self, status: int, message: str, code: str | None = None) -> None:
        super().__init__(f"{status}: {message}")
        self.status = status
        self.message = message
        self.code = code


@dataclass
class EncodeResult:
    """Codes of one encoded input plus what decoding needs."""

    codes: np.ndarray  # (F,) int64
    model: str
    sample_rate: int
    frame_rate: float
    codebook_size: int
    num_samples: int
    codebook_id: str | None = None  # None from a server that predates it

    @property
    def num_frames(self) -> int:
        return int(self.codes.shape[-1])

    @property
    def header(self) -> TokenHeader:
        return TokenHeader(
            model=self.model,
            sample_rate=self.sample_rate,
            frame_rate=self.frame_rate,
            codebook_size=self.codebook_size,
            num_samples=self.num_samples,
            codebook_id=self.codebook_id,
        )

    def to_tokenfile(self) -> bytes:
        return dumps(self.codes, self.header)


def sniff_audio_type(data: bytes) -> str:
    """Content type from the container's magic bytes."""
    if data[:4] == b"RIFF":
        return "audio/wav"
    if data[:4] == b"fLaC":
        return "audio/flac"
    if data[:4] == b"OggS":
        return "audio/ogg"
    if data[:3] == b"ID3" or data[:2] in (b"\xff\xfb", b"\xff\xf3", b"\xff\xf2"):
        return "audio/mpeg"
    return "audio/wav"  # the server names the real problem if it is not audio at all


def audio_payload(audio: AudioInput) -> tuple[bytes, str]:
    if isinstance(audio, bytes | bytearray):
        return bytes(audio), sniff_audio_type(bytes(audio))
    path = Path(audio)
    data = path.read_bytes()
    return data, EXTENSION_TYPES.get(path.suffix.lower(), sniff_audio_type(data))


def encode_params(model: str | None, search: int, beam: int = 1, refine: int = 0) -> dict | None:
    """Query parameters of an encode request: the model, search candidates when > 0, the
    search's beam when > 1 and its refining passes when > 0."""
    params = {**({"model": model} if model else {}), **({"search": search} if search else {})}
    if beam != 1:
        params["beam"] = beam
    if refine:
        params["refine"] = refine
    return params or None


def decode_payload(codes: CodesInput, num_samples: int | None, model: str | None):
    """httpx request keywords (`content` + headers, or `json`) for POST /v1/decode."""
    if isinstance(codes, bytes | bytearray):
        return {"content": bytes(codes), "headers": {"content-type": TOKEN_TYPE}}
    codebook_id = None
    if isinstance(codes, EncodeResult):
        num_samples = codes.num_samples if num_samples is None else num_samples
        model = model or codes.model
        codebook_id = codes.codebook_id
        codes = codes.codes
    body: dict[str, Any] = {"codes": np.asarray(codes, dtype=np.int64).reshape(-1).tolist()}
    if codebook_id is not None:
        body["codebook_id"] = codebook_id
    if num_samples is not None:
        body["num_samples"] = int(num_samples)
    if model is not None:
        body["model"] = model
    return {"json": body}


def raise_for_error(response: httpx.Response) -> None:
    """Raise `WavtokAPIError` with the server's message for a 4xx/5xx answer."""
    if response.status_code < 400:
        return
    try:
        err = response.json()["error"]
        message, code = str(err["message"]), err.get("code")
    except (ValueError, KeyError, TypeError):
        message, code = response.text[:200] or response.reason_phrase, None
    raise WavtokAPIError(response.status_code, message, code)


def encode_result(data: dict) -> EncodeResult:
    return EncodeResult(
        codes=np.asarray(data["codes"], dtype=np.int64),
        model=data["model"],
        sample_rate=int(data["sample_rate"]),
        frame_rate=float(data["frame_rate"]),
        codebook_size=int(data["codebook_size"]),
        num_samples=int(data["num_samples"]),
        codebook_id=data.get("codebook_id"),
    )


def pcm_chunk(chunk: Any, fmt: PcmFormat) -> bytes:
    """Bytes, or an array of samples (float in [-1, 1] or int16), -> little-endian `fmt` bytes."""
    if isinstance(chunk, bytes | bytearray | memoryview):
        return bytes(chunk)
    arr = np.asarray(chunk)
    if fmt == "f32":
        return np.ascontiguousarray(arr, dtype="<f4").tobytes()
    if arr.dtype.kind == "f":
        # The inverse of the server's 1/32768 scaling, so float input survives the round trip.
        arr = np.clip(np.round(arr * 32768.0), -32768, 32767)
    return np.ascontiguousarray(arr, dtype="<i2").tobytes()


def code_chunk(chunk: Any) -> bytes:
    """Bytes, or a sequence of code ids, -> little-endian uint16 bytes (the stream's format)."""
    if isinstance(chunk, bytes | bytearray | memoryview):
        return bytes(chunk)
    arr = np.asarray(chunk, dtype=np.int64).reshape(-1)
    if arr.size and (arr.min() < 0 or arr.max() > 0xFFFF):
        raise ValueError("code ids must lie in [0, 65535] to be streamed as uint16")
    return arr.astype("<u2").tobytes()
