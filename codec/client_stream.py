"""The client's WebSocket side, shared by `codec.client`'s sync and async clients: one
`ClientBase._ws` loop that sends and receives at once, and the encode and decode streams on it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable
from typing import Any

import numpy as np
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from codec.client_wire import PcmFormat, WavtokAPIError, code_chunk, pcm_chunk


async def _aiter(items: Iterable | AsyncIterable) -> AsyncIterator:
    if isinstance(items, AsyncIterable):
        async for item in items:
            yield item
        return
    it = iter(items)
    done = object()
    while True:
        # In a thread: a real-time source may sleep between chunks, and receiving must go on.
        item = await asyncio.to_thread(next, it, done)
        if item is done:
            return
        yield item


async def _closing_error(ws, message: str) -> WavtokAPIError:
    """The error for a server error message, with the close code that follows it."""
    # The server closes right after an error message; its close frame carries the code.
    with contextlib.suppress(ConnectionClosed, TimeoutError):
        await asyncio.wait_for(ws.recv(), 5)
    return WavtokAPIError(ws.close_code or 1011, message)


class ClientBase:
    """Connection settings and the WebSocket streams shared by the sync and async clients."""

    def __init__(self, base_url: str, api_key: str | None, timeout: float, trust_env: bool):
        self.base_url = base_url.rstrip("/")
        self.api_key = api_key
        self.timeout = timeout
        self.trust_env = trust_env
        self._headers = {"authorization": f"Bearer {api_key}"} if api_key else {}

    def _ws_url(self, path: str) -> str:
        scheme, rest = self.base_url.split("://", 1)
        return f"{'wss' if scheme == 'https' else 'ws'}://{rest}{path}"

    async def _ws(
        self,
        op: str,
        chunks: Iterable | AsyncIterable,
        start: dict,
        convert: Callable[[Any], bytes],
        on_output: Callable[[bytes], None],
    ) -> dict:
        """Run one stream; returns the server's "done" message. Sending and receiving overlap."""
        try:
            async with connect(
                self._ws_url(f"/v1/stream/{op}"),
                additional_headers=self._headers,
                proxy=True if self.trust_env else None,
                max_size=None,
                open_timeout=self.timeout,
            ) as ws:
                await ws.send(json.dumps({"type": "start", **start}))
                ready = json.loads(await ws.recv())
                if ready.get("type") != "ready":
                    raise await _closing_error(ws, ready.get("message", str(ready)))

                async def send_all() -> None:
                    async for chunk in _aiter(chunks):
                        data = convert(chunk)
                        if data:
                            await ws.send(data)
                    await ws.send(json.dumps({"type": "end"}))

                sender = asyncio.create_task(send_all())
                try:
                    while True:
                        msg = await ws.recv()
                        if isinstance(msg, bytes):
                            on_output(msg)
                            continue
                        control = json.loads(msg)
                        if control.get("type") == "done":
                            await sender
                            return control
                        if control.get("type") == "error":
                            raise await _closing_error(ws, control.get("message", ""))
                finally:
                    if not sender.done():
                        sender.cancel()
                    await asyncio.gather(sender, return_exceptions=True)
        except InvalidStatus as e:
            raise WavtokAPIError(e.response.status_code, "WebSocket handshake refused") from None
        except ConnectionClosed as e:
            code = e.rcvd.code if e.rcvd else 1006
            raise WavtokAPIError(code, (e.rcvd.reason if e.rcvd else "") or str(e)) from None

    async def _stream_encode(
        self,
        pcm_chunks: Iterable | AsyncIterable,
        sample_rate: int,
        format: PcmFormat,
        model: str | None,
        on_codes: Callable[[np.ndarray], None] | None,
    ) -> np.ndarray:
        parts: list[np.ndarray] = []

        def collect(data: bytes) -> None:
            codes = np.frombuffer(data, "<u2").astype(np.int64)
            parts.append(codes)
            if on_codes is not None:
                on_codes(codes)

        start = {
            "sample_rate": sample_rate,
            "format": format,
            **({"model": model} if model else {}),
        }
        await self._ws("encode", pcm_chunks, start, lambda c: pcm_chunk(c, format), collect)
        return np.concatenate(parts) if parts else np.zeros(0, np.int64)

    async def _stream_decode(
        self,
        code_chunks: Iterable | AsyncIterable,
        format: PcmFormat,
        model: str | None,
        on_audio: Callable[[np.ndarray], None] | None,
    ) -> np.ndarray:
        dtype = "<i2" if format == "pcm16" else "<f4"
        parts: list[np.ndarray] = []

        def collect(data: bytes) -> None:
            audio = np.frombuffer(data, dtype)
            parts.append(audio)
            if on_audio is not None:
                on_audio(audio)

        start = {"format": format, **({"model": model} if model else {})}
        await self._ws("decode", code_chunks, start, code_chunk, collect)
        return np.concatenate(parts) if parts else np.zeros(0, dtype)
