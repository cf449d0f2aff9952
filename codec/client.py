"""Python client for the wavtok service (`wavtok serve`): HTTP via httpx, streams via websockets.

    client = WavtokClient("http://127.0.0.1:8000", api_key="...")
    result = client.encode("speech.flac")            # EncodeResult: codes + metadata
    wav_bytes = client.decode(result)                 # trimmed to the original length
    codes = client.stream_encode(pcm16_chunks)        # real-time WebSocket encode

`AsyncWavtokClient` has the same methods as coroutines. The sync WebSocket helpers run the async
ones in a private event loop, so call them from plain (non-async) code only. The wire format
lives in `codec.client_wire`, the WebSocket loop in `codec.client_stream`.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable, Iterator

import httpx
import numpy as np

from codec.client_stream import ClientBase
from codec.client_wire import (
    TOKEN_TYPE,
    AudioInput,
    CodesInput,
    EncodeResult,
    PcmFormat,
    WavtokAPIError,
    audio_payload,
    decode_payload,
    encode_params,
    encode_result,
    raise_for_error,
)

__all__ = ["AsyncWavtokClient", "EncodeResult", "WavtokAPIError", "WavtokClient"]


class WavtokClient(ClientBase):
    """Synchronous client. Use as a context manager, or call `close()`."""

    def __init__(
        self,
        base_url: str,
        api_key: str | None = None,
        timeout: float = 60.0,
        trust_env: bool = True,
    ) -> None:
        super().__init__(base_url, api_key, timeout, trust_env)
        self._http = httpx.Client(
            base_url=self.base_url, headers=self._headers, timeout=timeout, trust_env=trust_env
        )

    def __enter__(self) -> WavtokClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def health(self) -> dict:
        r = self._http.get("/healthz")
        raise_for_error(r)
        return r.json()

    def ready(self) -> bool:
        return self._http.get("/readyz").status_code == 200

    def models(self) -> list[dict]:
        r = self._http.get("/v1/models")
        raise_for_error(r)
        return r.json()["models"]

    def encode(
        self,
        audio: AudioInput,
        model: str | None = None,
        search: int = 0,
        beam: int = 1,
        refine: int = 0,
    ) -> EncodeResult:
        """Audio file bytes or a path (any rate and channel count) -> codes and metadata.
        `search` > 0: tokens chosen among that many nearest codes by the decoded audio
        (slower, closer to the input; see `codec.search`); `beam` > 1 keeps that many token
        sequences while searching, `refine` > 0 adds that many passes that choose every token
        again (each closer still, slower)."""
        data, content_type = audio_payload(audio)
        r = self._http.post(
            "/v1/encode",
            content=data,
            headers={"content-type": content_type},
            params=encode_params(model, search, beam, refine),
        )
        raise_for_error(r)
        return encode_result(r.json())

    def encode_to_tokenfile(
        self,
        audio: AudioInput,
        model: str | None = None,
        search: int = 0,
        beam: int = 1,
        refine: int = 0,
    ) -> bytes:
        """Like `encode`, but the server's `.wtok` token file bytes."""
        data, content_type = audio_payload(audio)
        r = self._http.post(
            "/v1/encode",
            content=data,
            headers={"content-type": content_type, "accept": TOKEN_TYPE},
            params=encode_params(model, search, beam, refine),
        )
        raise_for_error(r)
        return r.content

    def decode(
        self,
        codes: CodesInput,
        num_samples: int | None = None,
        format: str = "wav",
        model: str | None = None,
    ) -> bytes:
        """Codes (EncodeResult, ids, or token-file bytes) -> audio bytes in `format`."""
        params = {"format": format, **({"model": model} if model else {})}
        r = self._http.post("/v1/decode", params=params, **decode_payload(codes, num_samples, None))
        raise_for_error(r)
        return r.content

    def decode_stream(
        self,
        codes: CodesInput,
        num_samples: int | None = None,
        format: str = "pcm16",
        model: str | None = None,
    ) -> Iterator[bytes]:
        """Like `decode` with `stream=true`: yields audio bytes as the server decodes them."""
        params = {"format": format, "stream": "true", **({"model": model} if model else {})}
        payload = decode_payload(codes, num_samples, None)
        with self._http.stream("POST", "/v1/decode", params=params, **payload) as r:
            if r.status_code >= 400:
                r.read()
                raise_for_error(r)
            yield from r.iter_bytes()

    def stream_encode(
        self,
        pcm_chunks: Iterable,
        sample_rate: int = 24000,
        format: PcmFormat = "pcm16",
        model: str | None = None,
        on_codes: Callable[[np.ndarray], None] | None = None,
    ) -> np.ndarray:
        """PCM chunks (bytes, int16 or float arrays) over a WebSocket -> (F,) int64 codes."""
        return asyncio.run(self._stream_encode(pcm_chunks, sample_rate, format, model, on_codes))

    def stream_decode(
        self,
        code_chunks: Iterable,
        format: PcmFormat = "pcm16",
        model: str | None = None,
        on_audio: Callable[[np.ndarray], None] | None = None,
    ) -> np.ndarray:
        """Code chunks over a WebSocket -> samples (int16 for pcm16, float32 for f32)."""
        return asyncio.run(self._stream_decode(code_chunks, format, model, on_audio))


class AsyncWavtokClient(ClientBase):
    """Asynchronous client; `async with AsyncWavtokClient(url) as client: ...`."""

    def __init__(
        self,
        base_url: str,
        api_key: str | None = None,
        timeout: float = 60.0,
        trust_env: bool = True,
    ) -> None:
        super().__init__(base_url, api_key, timeout, trust_env)
        self._http = httpx.AsyncClient(
            base_url=self.base_url, headers=self._headers, timeout=timeout, trust_env=trust_env
        )

    async def __aenter__(self) -> AsyncWavtokClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        await self._http.aclose()

    async def health(self) -> dict:
        r = await self._http.get("/healthz")
        raise_for_error(r)
        return r.json()

    async def ready(self) -> bool:
        return (await self._http.get("/readyz")).status_code == 200

    async def models(self) -> list[dict]:
        r = await self._http.get("/v1/models")
        raise_for_error(r)
        return r.json()["models"]

    async def encode(
        self,
        audio: AudioInput,
        model: str | None = None,
        search: int = 0,
        beam: int = 1,
        refine: int = 0,
    ) -> EncodeResult:
        data, content_type = audio_payload(audio)
        r = await self._http.post(
            "/v1/encode",
            content=data,
            headers={"content-type": content_type},
            params=encode_params(model, search, beam, refine),
        )
        raise_for_error(r)
        return encode_result(r.json())

    async def encode_to_tokenfile(
        self,
        audio: AudioInput,
        model: str | None = None,
        search: int = 0,
        beam: int = 1,
        refine: int = 0,
    ) -> bytes:
        data, content_type = audio_payload(audio)
        r = await self._http.post(
            "/v1/encode",
            content=data,
            headers={"content-type": content_type, "accept": TOKEN_TYPE},
            params=encode_params(model, search, beam, refine),
        )
        raise_for_error(r)
        return r.content

    async def decode(
        self,
        codes: CodesInput,
        num_samples: int | None = None,
        format: str = "wav",
        model: str | None = None,
    ) -> bytes:
        params = {"format": format, **({"model": model} if model else {})}
        payload = decode_payload(codes, num_samples, None)
        r = await self._http.post("/v1/decode", params=params, **payload)
        raise_for_error(r)
        return r.content

    async def decode_stream(
        self,
        codes: CodesInput,
        num_samples: int | None = None,
        format: str = "pcm16",
        model: str | None = None,
    ) -> AsyncIterator[bytes]:
        params = {"format": format, "stream": "true", **({"model": model} if model else {})}
        payload = decode_payload(codes, num_samples, None)
        async with self._http.stream("POST", "/v1/decode", params=params, **payload) as r:
            if r.status_code >= 400:
                await r.aread()
                raise_for_error(r)
            async for chunk in r.aiter_bytes():
                yield chunk

    async def stream_encode(
        self,
        pcm_chunks: Iterable | AsyncIterable,
        sample_rate: int = 24000,
        format: PcmFormat = "pcm16",
        model: str | None = None,
        on_codes: Callable[[np.ndarray], None] | None = None,
    ) -> np.ndarray:
        return await self._stream_encode(pcm_chunks, sample_rate, format, model, on_codes)

    async def stream_decode(
        self,
        code_chunks: Iterable | AsyncIterable,
        format: PcmFormat = "pcm16",
        model: str | None = None,
        on_audio: Callable[[np.ndarray], None] | None = None,
    ) -> np.ndarray:
        return await self._stream_decode(code_chunks, format, model, on_audio)
