"""Streaming: WebSocket encode/decode sessions and the chunked decoder behind `?stream=true`.

A WebSocket session is full duplex: a reader task queues incoming frames while the worker runs
model steps on the shared streaming pool and sends results as soon as they are final. Frames
that arrived during a step are coalesced into the next one, so a stream that fell behind
catches up with fewer, larger steps instead of drifting further. Protocol: docs/api.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import struct
from collections.abc import AsyncIterator
from concurrent.futures import Executor

import numpy as np
import torch
from fastapi import FastAPI, WebSocket
from starlette.websockets import WebSocketDisconnect, WebSocketDisconnected

from codec.audio import encode_audio_bytes
from server import errors
from server.limits import bearer_token, key_allowed
from server.metrics import Metrics
from server.registry import ModelRegistry, ModelRunner
from server.settings import Settings

log = logging.getLogger("wavtok.server")

# RFC 6455 close codes used here.
CLOSE_NORMAL = 1000
CLOSE_UNSUPPORTED = 1003
CLOSE_INVALID_DATA = 1007
CLOSE_POLICY = 1008
CLOSE_INTERNAL = 1011
CLOSE_TRY_LATER = 1013
_GONE = (WebSocketDisconnect, WebSocketDisconnected, OSError)


def wav_header(sample_rate: int, num_samples: int) -> bytes:
    """A 44-byte mono PCM16 WAV header for `num_samples` samples, written before the audio."""
    data = num_samples * 2
    return (
        struct.pack("<4sI4s", b"RIFF", 36 + data, b"WAVE")
        + struct.pack("<4sIHHIIHH", b"fmt ", 16, 1, 1, sample_rate, sample_rate * 2, 2, 16)
        + struct.pack("<4sI", b"data", data)
    )


def pcm_bytes(audio: np.ndarray, fmt: str) -> bytes:
    """(T,) float samples -> raw little-endian "pcm16" (the codec's PCM16 rule) or "f32"."""
    if fmt == "f32":
        return np.ascontiguousarray(audio, dtype="<f4").tobytes()
    return encode_audio_bytes(torch.from_numpy(np.asarray(audio, np.float32)), 1, "PCM16")


class StreamSlots:
    """Counts open streams (WebSockets and streamed HTTP decodes) against `max_streams`."""

    def __init__(self, limit: int, metrics: Metrics) -> None:
        self.limit = limit
        self.active = 0
        self.metrics = metrics

    def try_acquire(self, op: str) -> bool:
        if self.active >= self.limit:
            self.metrics.rejected.labels("max_streams").inc()
            return False
        self.active += 1
        self.metrics.active_streams.labels(op).inc()
        return True

    def release(self, op: str) -> None:
        self.active -= 1
        self.metrics.active_streams.labels(op).dec()


class StreamError(Exception):
    def __init__(self, close_code: int, message: str) -> None:
        super().__init__(message)
        self.close_code = close_code
        self.message = message


async def decode_chunks(
    runner: ModelRunner, executor: Executor, codes: torch.Tensor, num_samples: int, chunk: int
) -> AsyncIterator[np.ndarray]:
    """Causal streaming decode of (F,) codes, `chunk` frames per step, trimmed to num_samples."""
    loop = asyncio.get_running_loop()
    decoder = runner.codec.streaming_decoder()
    seconds = runner.metrics.audio_seconds.labels(runner.name, "decode", "http_stream")

    def step(part: torch.Tensor | None) -> np.ndarray:
        with runner.decode_precision():
            # None ends the stream: a decoder with lookahead still holds its last frames.
            audio = decoder.flush() if part is None else decoder.push(part[None])
            return audio[0].float().cpu().numpy()

    sent = 0
    parts = [codes[start : start + chunk] for start in range(0, codes.shape[-1], chunk)]
    for part in [*parts, None]:
        audio = await loop.run_in_executor(executor, step, part)
        audio = audio[: num_samples - sent]
        sent += audio.shape[-1]
        seconds.inc(audio.shape[-1] / runner.codec.sample_rate)
        if audio.size:
            yield audio


async def array_chunks(audio: np.ndarray, step: int) -> AsyncIterator[np.ndarray]:
    for start in range(0, audio.shape[-1], step):
        yield audio[start : start + step]


class _Session:
    """One stream's conversion state; `step` and `finish` run on the streaming pool."""

    def __init__(self, runner: ModelRunner, op: str, fmt: str) -> None:
        self.runner = runner
        self.op = op
        self.fmt = fmt
        self.width = 2 if op == "decode" or fmt == "pcm16" else 4
        self.rest = b""  # a partial sample or code split across frames
        self.frames = 0
        self.samples = 0
        codec = runner.codec
        self.state = codec.streaming_encoder() if op == "encode" else codec.streaming_decoder()

    def _take(self, data: bytes) -> bytes:
        data = self.rest + data
        usable = len(data) - len(data) % self.width
        self.rest = data[usable:]
        return data[:usable]

    def step(self, data: bytes) -> bytes:
        data = self._take(data)
        if not data:
            return b""
        if self.op == "encode":
            return self._encode(data)
        with self.runner.decode_precision():
            return self._decode(data)

    def _encode(self, data: bytes) -> bytes:
        if self.fmt == "pcm16":
            # 1/32768 is how soundfile reads PCM16 files, so streamed and uploaded audio agree.
            wav = np.frombuffer(data, "<i2").astype(np.float32) / 32768.0
        else:
            wav = np.frombuffer(data, "<f4").astype(np.float32)
            if not np.isfinite(wav).all():
                raise StreamError(CLOSE_INVALID_DATA, "audio contains NaN or infinite samples")
        self.samples += wav.shape[-1]
        codes = self.state.push(torch.from_numpy(wav)[None])[0]
        self.frames += codes.shape[-1]
        return codes.cpu().numpy().astype("<u2").tobytes()

    def _decode(self, data: bytes) -> bytes:
        codes = np.frombuffer(data, "<u2").astype(np.int64)
        size = self.runner.codec.codebook_size
        if codes.max() >= size:
            raise StreamError(CLOSE_INVALID_DATA, f"code id {int(codes.max())} >= {size}")
        audio = self.state.push(torch.from_numpy(codes)[None])[0].float().cpu().numpy()
        self.frames += codes.shape[-1]
        self.samples += audio.shape[-1]
        return pcm_bytes(audio, self.fmt)

    def finish(self) -> bytes:
        if self.rest:
            raise StreamError(CLOSE_INVALID_DATA, f"{len(self.rest)} stray bytes at the end")
        if self.op == "decode":
            # A decoder with lookahead holds its last frames until the stream ends.
            with self.runner.decode_precision():
                audio = self.state.flush()[0].float().cpu().numpy()
            self.samples += audio.shape[-1]
            return pcm_bytes(audio, self.fmt)
        codes = self.state.flush()[0]
        self.frames += codes.shape[-1]
        return codes.cpu().numpy().astype("<u2").tobytes()


def _parse_start(text: str | None, registry: ModelRegistry) -> tuple[ModelRunner, str]:
    try:
        msg = json.loads(text) if text is not None else None
    except json.JSONDecodeError:
        msg = None
    if not isinstance(msg, dict) or msg.get("type") != "start":
        raise StreamError(CLOSE_POLICY, 'first message must be JSON {"type": "start", ...}')
    try:
        runner = registry.get(msg.get("model"))
    except errors.APIError as e:
        raise StreamError(CLOSE_TRY_LATER if e.status == 503 else CLOSE_POLICY, e.message) from None
    codec = runner.codec
    if not codec.causal:
        raise StreamError(CLOSE_POLICY, f"model {codec.name!r} is not causal and cannot stream")
    if codec.codebook_size > 65536:
        raise StreamError(CLOSE_POLICY, "codebook too large for uint16 code frames")
    rate = msg.get("sample_rate", codec.sample_rate)
    if rate != codec.sample_rate:
        raise StreamError(
            CLOSE_POLICY,
            f"sample_rate must be {codec.sample_rate} (the model's rate); got {rate!r}. "
            "Resample on the client.",
        )
    expected = msg.get("codebook_id")
    if expected is not None and expected != codec.codebook_id:
        raise StreamError(
            CLOSE_POLICY,
            f"codebook_id {expected!r} is not model {codec.name!r}'s ({codec.codebook_id}): "
            "its codes would mean other sounds",
        )
    fmt = msg.get("format", "pcm16")
    if fmt not in ("pcm16", "f32"):
        raise StreamError(CLOSE_POLICY, f'format must be "pcm16" or "f32", got {fmt!r}')
    return runner, fmt


async def _reader(ws: WebSocket, inbox: asyncio.Queue) -> None:
    """Queue ("data", bytes), ("end", None), ("bad", text) or ("gone", None) items."""
    try:
        while True:
            msg = await ws.receive()
            if msg["type"] == "websocket.disconnect":
                break
            if msg.get("bytes") is not None:
                await inbox.put(("data", msg["bytes"]))
                continue
            text = msg.get("text")
            try:
                control = json.loads(text) if text else None
            except json.JSONDecodeError:
                control = None
            if isinstance(control, dict) and control.get("type") == "end":
                await inbox.put(("end", None))
            else:
                await inbox.put(("bad", text))
            return
    except _GONE:
        pass
    # However the connection ended, the worker must learn of it now, not at its idle timeout.
    await inbox.put(("gone", None))


async def _run(ws: WebSocket, op: str, registry: ModelRegistry, settings: Settings) -> str:
    loop = asyncio.get_running_loop()
    timeout = settings.stream_idle_timeout_s
    try:
        first = await asyncio.wait_for(ws.receive(), timeout)
    except TimeoutError:
        raise StreamError(CLOSE_POLICY, f"no start message within {timeout} s") from None
    if first["type"] == "websocket.disconnect":
        return "disconnected"
    runner, fmt = _parse_start(first.get("text"), registry)
    session = _Session(runner, op, fmt)
    codec = runner.codec
    latency = session.state.latency_ms
    await ws.send_json(
        {
            "type": "ready",
            "model": codec.name,
            "sample_rate": codec.sample_rate,
            "frame_rate": codec.frame_rate,
            "codebook_size": codec.codebook_size,
            "codebook_id": codec.codebook_id,
            "format": fmt,
            "latency_ms": latency,
        }
    )
    executor = registry.stream_executor
    inbox: asyncio.Queue = asyncio.Queue(maxsize=256)
    reader = asyncio.create_task(_reader(ws, inbox))
    seconds = runner.metrics.audio_seconds.labels(codec.name, op, "ws")
    try:
        while True:
            try:
                kind, payload = await asyncio.wait_for(inbox.get(), timeout)
            except TimeoutError:
                raise StreamError(CLOSE_POLICY, f"idle for {timeout} s") from None
            batch: list[bytes] = []
            while kind == "data":
                batch.append(payload)
                if inbox.empty():
                    kind = None
                    break
                kind, payload = inbox.get_nowait()
            if batch:
                before = session.samples
                out = await loop.run_in_executor(executor, session.step, b"".join(batch))
                seconds.inc((session.samples - before) / codec.sample_rate)
                if out:
                    await ws.send_bytes(out)
            if kind == "gone":
                return "disconnected"
            if kind == "bad":
                raise StreamError(CLOSE_POLICY, 'expected binary frames or {"type": "end"}')
            if kind == "end":
                out = await loop.run_in_executor(executor, session.finish)
                if out:
                    await ws.send_bytes(out)
                done = {"type": "done", "frames": session.frames, "samples": session.samples}
                await ws.send_json(done)
                await ws.close(CLOSE_NORMAL)
                return "completed"
    finally:
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError, *_GONE):
            await reader


async def _fail(ws: WebSocket, code: int, message: str) -> None:
    with contextlib.suppress(*_GONE, RuntimeError):
        await ws.send_json({"type": "error", "message": message})
        await ws.close(code, message[:120])


def install(app: FastAPI, registry: ModelRegistry, settings: Settings, metrics: Metrics) -> None:
    """Add the WebSocket routes; `app.state.stream_slots` is shared with streamed decodes."""
    slots = StreamSlots(settings.max_streams, metrics)
    app.state.stream_slots = slots

    async def serve(ws: WebSocket, op: str) -> None:
        await ws.accept()
        key = bearer_token(ws.headers) or ws.query_params.get("api_key")
        if not key_allowed(settings.api_keys, key):
            await _fail(ws, CLOSE_POLICY, "missing or invalid API key")
            return
        if not slots.try_acquire(op):
            await _fail(ws, CLOSE_TRY_LATER, f"too many streams (limit {slots.limit}); retry later")
            return
        outcome = "error"
        try:
            outcome = await _run(ws, op, registry, settings)
        except StreamError as e:
            await _fail(ws, e.close_code, e.message)
        except _GONE:
            outcome = "disconnected"
        except Exception:
            log.exception("stream %s failed", op)
            await _fail(ws, CLOSE_INTERNAL, "internal error")
        finally:
            slots.release(op)
            metrics.streams.labels(op, outcome).inc()

    @app.websocket("/v1/stream/encode")
    async def stream_encode(ws: WebSocket) -> None:
        """PCM (pcm16 or f32, little-endian) in -> uint16 code frames out."""
        await serve(ws, "encode")

    @app.websocket("/v1/stream/decode")
    async def stream_decode(ws: WebSocket) -> None:
        """uint16 code frames in -> PCM out."""
        await serve(ws, "decode")
