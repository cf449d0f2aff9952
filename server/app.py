"""The HTTP service: `create_app(settings)` builds the FastAPI app with every route.

Heavy work never runs on the event loop: audio parsing and output encoding go to the thread
pool, model calls to the per-model batchers (or the shared streaming pool). Handlers waiting on a
batch also watch for the client hanging up, and withdraw their item when it does.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable
from typing import Annotated, TypeVar

import numpy as np
import torch
from fastapi import APIRouter, Depends, FastAPI, Query, Request, Response
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import ValidationError
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect

from codec import tokenfile
from codec.audio import encode_audio_bytes
from codec.search import settings_from
from server import errors, inputs, streams
from server.batching import BatcherClosed, QueueFull
from server.limits import BodyLimitMiddleware, bearer_token, key_allowed
from server.metrics import Metrics, MetricsMiddleware
from server.registry import ModelRegistry, ModelRunner
from server.schemas import (
    AUDIO_CONTENT,
    AUDIO_TYPES,
    DECODE_BODY,
    ENCODE_BODY,
    MEDIA,
    TOKEN_TYPE,
    DecodeRequest,
    EncodeResponse,
    ErrorResponse,
    HealthResponse,
    ModelInfo,
    ModelsResponse,
    OutputFormat,
    ReadyResponse,
)
from server.settings import Settings

log = logging.getLogger("wavtok.server")
# Search cost grows with the candidates; past ~16 the fidelity stops improving (docs/search.md).
MAX_SEARCH_CANDIDATES = 32
# A beam of 4 costs ~2.5 greedy searches and gave the measured gain (docs/search.md).
MAX_SEARCH_BEAM = 8
# Each refining pass costs about one more greedy search (docs/search.md).
MAX_SEARCH_REFINE = 4
T = TypeVar("T")

ModelParam = Annotated[
    str | None, Query(description="Model name (overrides a decode body's); default: the server's.")
]
FormatParam = Annotated[
    OutputFormat,
    Query(
        description="wav and flac are 16-bit files; pcm16 is raw little-endian int16, "
        "f32 raw little-endian float32, both mono at the model's rate."
    ),
]
SearchParam = Annotated[
    int,
    Query(
        ge=0,
        le=MAX_SEARCH_CANDIDATES,
        description="Choose each token among its N nearest codes by the decoded audio "
        "(analysis-by-synthesis; causal models): same tokens format, closer to the input, "
        "encodes several times slower. 0: the nearest code.",
    ),
]
BeamParam = Annotated[
    int,
    Query(
        ge=1,
        le=MAX_SEARCH_BEAM,
        description="With search: keep the W best token sequences instead of the best one (a "
        "beam search; closer to the input, ~2.5x slower at W = 4). 1: greedy.",
    ),
]
RefineParam = Annotated[
    int,
    Query(
        ge=0,
        le=MAX_SEARCH_REFINE,
        description="With search: choose every token again this many more times, each pass "
        "hearing the tokens the previous one chose after it (closer to the input; each pass "
        "costs about one greedy search more). 0: one pass.",
    ),
]
StreamParam = Annotated[
    bool, Query(description="Send audio while it is decoded (wav, pcm16 or f32).")
]


def _errors(*codes: int) -> dict:
    return {c: {"model": ErrorResponse} for c in codes}


async def _until_done_or_gone(request: Request, work: Awaitable[T]) -> T:
    """Await `work`; if the client disconnects first, cancel it (withdrawing a queued item)."""
    task = asyncio.ensure_future(work)

    async def gone() -> None:
        while (await request.receive())["type"] != "http.disconnect":
            pass

    watcher = asyncio.ensure_future(gone())
    try:
        await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        watcher.cancel()
    if not task.done():
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        raise ClientDisconnect()
    try:
        return task.result()
    except QueueFull as e:
        raise errors.overloaded(f"server is overloaded ({e}); retry later") from None
    except BatcherClosed as e:
        raise errors.APIError(503, "shutting_down", str(e)) from None


def create_app(settings: Settings | None = None) -> FastAPI:
    """The service app; models load in the background after startup (see /readyz)."""
    settings = settings or Settings()
    metrics = Metrics()
    registry = ModelRegistry(settings, metrics)

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        loading = asyncio.create_task(registry.load())
        yield
        loading.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await loading
        await registry.close()

    app = FastAPI(
        title="wavtok codec service",
        version="0.1.0",
        description="Neural audio codec: audio <-> token ids, offline (batched) and streaming. "
        "See docs/api.md for the WebSocket protocol.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.metrics = metrics
    app.state.registry = registry
    errors.install_handlers(app)
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["*"],
            allow_headers=["*"],
        )
    app.add_middleware(MetricsMiddleware, metrics=metrics)

    async def require_key(request: Request) -> None:
        if not key_allowed(settings.api_keys, bearer_token(request.headers)):
            raise errors.unauthorized()

    api = APIRouter(prefix="/v1", dependencies=[Depends(require_key)])

    @app.get("/healthz", response_model=HealthResponse, tags=["ops"])
    async def healthz() -> HealthResponse:
        """Liveness: the process answers."""
        return HealthResponse(status="ok")

    @app.get("/readyz", response_model=ReadyResponse, responses={503: {}}, tags=["ops"])
    async def readyz() -> JSONResponse:
        """Readiness: 200 once every model is loaded and warmed up, else 503."""
        body = ReadyResponse(ready=registry.ready, models=sorted(registry.runners))
        body.error = registry.error
        return JSONResponse(body.model_dump(), 200 if registry.ready else 503)

    @app.get("/metrics", tags=["ops"], response_class=Response)
    async def prometheus() -> Response:
        """Prometheus text exposition."""
        data, content_type = metrics.render()
        return Response(data, media_type=content_type)

    @api.get("/models", response_model=ModelsResponse, responses=_errors(401, 503))
    async def models() -> ModelsResponse:
        """The served models; `default` marks the one used when a request names none."""
        registry.get(None)  # 503 while loading
        infos = [r.info(name == registry.default_name) for name, r in registry.runners.items()]
        return ModelsResponse(models=[ModelInfo(**i) for i in infos])

    @api.post(
        "/encode",
        response_model=EncodeResponse,
        responses={
            200: {"content": {TOKEN_TYPE: {"schema": {"type": "string", "format": "binary"}}}},
            **_errors(401, 404, 413, 415, 422, 503),
        },
        openapi_extra=ENCODE_BODY,
    )
    async def encode(
        request: Request,
        model: ModelParam = None,
        search: SearchParam = 0,
        beam: BeamParam = 1,
        refine: RefineParam = 0,
    ) -> Response:
        """Audio (any rate, any channel count) -> token ids.

        Send the file as the raw body with its audio Content-Type, or as multipart field
        `file`. `Accept: application/octet-stream` returns a `.wtok` token file instead of JSON.
        """
        runner = registry.get(model)
        if search and not runner.codec.causal:
            raise errors.bad_request(f"search needs a causal model; {runner.name!r} is not")
        if beam > 1 and not search:
            raise errors.bad_request("beam needs search (e.g. ?search=8&beam=4)")
        if refine and not search:
            raise errors.bad_request("refine needs search (e.g. ?search=8&refine=1)")
        try:
            search_settings = settings_from(search, runner.codec.config, beam, refine)
        except ValueError as e:
            raise errors.bad_request(str(e)) from None
        media = inputs.media_type(request)
        if media == "multipart/form-data":
            form = await request.form(max_files=1, max_fields=4)
            upload = form.get("file")
            if upload is None or isinstance(upload, str):
                raise errors.bad_request("multipart body needs a file field named 'file'")
            data = await upload.read()
            await form.close()
        elif media in AUDIO_TYPES:
            data = await request.body()
        else:
            raise errors.unsupported_media(media, [*AUDIO_TYPES, "multipart/form-data"])
        limit, limit_name = settings.max_audio_seconds, ""
        if search and settings.max_search_audio_seconds < limit:
            limit = settings.max_search_audio_seconds
            limit_name = " for search encoding (WAVTOK_MAX_SEARCH_AUDIO_SECONDS)"
        wav = await run_in_threadpool(inputs.prepare_audio, data, runner, limit, limit_name)
        codes = await _until_done_or_gone(request, runner.encode(wav, search_settings))
        c = runner.codec
        if TOKEN_TYPE in request.headers.get("accept", ""):
            header = tokenfile.TokenHeader.for_model(c, wav.shape[-1])
            return Response(tokenfile.dumps(codes, header), media_type=TOKEN_TYPE)
        body = EncodeResponse(
            model=c.name,
            sample_rate=c.sample_rate,
            frame_rate=c.frame_rate,
            codebook_size=c.codebook_size,
            codebook_id=c.codebook_id,
            num_frames=int(codes.shape[-1]),
            num_samples=int(wav.shape[-1]),
            codes=codes.tolist(),
        )
        return JSONResponse(body.model_dump())

    @api.post(
        "/decode",
        response_class=Response,
        responses={
            200: {"content": AUDIO_CONTENT, "description": "Audio in the asked format."},
            **_errors(401, 404, 413, 415, 422, 503),
        },
        openapi_extra=DECODE_BODY,
    )
    async def decode(
        request: Request,
        model: ModelParam = None,
        format: FormatParam = "wav",
        stream: StreamParam = False,
    ) -> Response:
        """Token ids (JSON `DecodeRequest`, or a `.wtok` file) -> audio at the model's rate."""
        media = inputs.media_type(request)
        if media not in ("application/json", TOKEN_TYPE):
            raise errors.unsupported_media(media, ["application/json", TOKEN_TYPE])
        body = await request.body()
        header = None
        if media == "application/json":
            try:
                req = DecodeRequest.model_validate_json(body)
                ids = np.asarray(req.codes, np.int64)
            except ValidationError as e:
                raise errors.invalid_codes(inputs.first_error(e)) from None
            except OverflowError:
                raise errors.invalid_codes("code ids must fit in 64-bit integers") from None
            name, num_samples, codebook_id = req.model, req.num_samples, req.codebook_id
        else:
            try:
                ids, header = tokenfile.loads(body)
            except tokenfile.TokenFileError as e:
                raise errors.invalid_codes(str(e)) from None
            name, num_samples, codebook_id = header.model, header.num_samples, None
        runner = registry.get(model or name)
        codes = inputs.checked_codes(runner, ids, header, codebook_id, settings)
        total = codes.shape[-1] * runner.codec.hop_length
        if num_samples is not None and not 1 <= num_samples <= total:
            raise errors.invalid_codes(f"num_samples must lie in [1, {total}] for these codes")
        num_samples = num_samples or total
        sr = runner.codec.sample_rate
        headers = {"X-Sample-Rate": str(sr), "X-Num-Samples": str(num_samples)}
        if stream:
            if format == "flac":
                raise errors.bad_request("stream=true supports format wav, pcm16 or f32")
            return await _streamed(request, runner, codes, num_samples, format, headers)
        audio = await _until_done_or_gone(request, runner.decode(codes, num_samples))
        if format in ("pcm16", "f32"):
            data = await run_in_threadpool(streams.pcm_bytes, audio, format)
        else:
            data = await run_in_threadpool(
                encode_audio_bytes, torch.from_numpy(audio), sr, format.upper()
            )
        return Response(data, media_type=MEDIA[format], headers=headers)

    async def _streamed(
        request: Request,
        runner: ModelRunner,
        codes: torch.Tensor,
        num_samples: int,
        fmt: str,
        headers: dict[str, str],
    ) -> Response:
        slots: streams.StreamSlots = app.state.stream_slots
        if not slots.try_acquire("decode_http"):
            raise errors.overloaded(f"too many streams (limit {slots.limit}); retry later")
        release = _Once(lambda: slots.release("decode_http"))
        step = settings.stream_chunk_frames
        try:
            if runner.codec.causal:
                chunks = streams.decode_chunks(
                    runner, registry.stream_executor, codes, num_samples, step
                )
            else:
                # A non-causal model cannot decode piecewise: decode whole, send in chunks.
                audio = await _until_done_or_gone(request, runner.decode(codes, num_samples))
                chunks = streams.array_chunks(audio, step * runner.codec.hop_length)
        except BaseException:
            release()
            raise
        body = _stream_body(chunks, fmt, runner.codec.sample_rate, num_samples, release)
        # The background task covers a response cancelled before its body generator started.
        return StreamingResponse(
            body, media_type=MEDIA[fmt], headers=headers, background=BackgroundTask(release)
        )

    app.include_router(api)
    streams.install(app, registry, settings, metrics)
    return app


class _Once:
    """Call `fn` at most once, however many paths try to."""

    def __init__(self, fn) -> None:
        self.fn = fn

    def __call__(self) -> None:
        fn, self.fn = self.fn, None
        if fn is not None:
            fn()


async def _stream_body(
    chunks: AsyncIterator[np.ndarray], fmt: str, sample_rate: int, num_samples: int, release
) -> AsyncIterator[bytes]:
    try:
        if fmt == "wav":
            yield streams.wav_header(sample_rate, num_samples)
        async for audio in chunks:
            yield streams.pcm_bytes(audio, "f32" if fmt == "f32" else "pcm16")
    finally:
        # Closing the decoder generator stops decoding when the client has gone away.
        await chunks.aclose()
        release()
