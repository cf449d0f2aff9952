"""Loaded models and their batched runners.

Each served model gets a `ModelRunner`: one single-thread executor (a model runs one batch at a
time; parallel batches would only fight over the same cores or GPU), an encode batcher and a
decode batcher. Search encoding (`?search=N`) costs hundreds of times a plain encode, so it has
its own batcher on its own single-thread executor: a long search slows plain requests (they
share the cores) but never makes them wait for it to end. Streaming steps run on a separate,
shared pool so that real-time streams do not queue behind large offline batches.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from codec.model import Codec, resolve_model_dir
from codec.precision import checked_decode_dtype, decode_autocast
from codec.search import SearchSettings, encode_with
from server import errors
from server.batching import DynamicBatcher
from server.metrics import Metrics
from server.settings import Settings

log = logging.getLogger("wavtok.server")

# Padded samples (or frames x hop) one batch may hold; longer mixes are split by length so a
# single long request does not multiply the cost of many short ones.
_BATCH_BUDGET_SECONDS = 120.0


@dataclass
class EncodeItem:
    wav: torch.Tensor  # (T,) float32 at the model's rate
    # How tokens are chosen (codec/search.py, checked for this model); None: the nearest code.
    search: SearchSettings | None = None
    # Set when nobody waits for the result any more; a running search then stops.
    abandoned: threading.Event = field(default_factory=threading.Event)


@dataclass
class DecodeItem:
    codes: torch.Tensor  # (F,) int64, already validated
    num_samples: int


def _groups(lengths: list[int], budget: int) -> list[list[int]]:
    """Indices grouped by similar length so that len(group) * max(length) <= budget."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    groups: list[list[int]] = []
    for i in order:
        if groups and (len(groups[-1]) + 1) * lengths[i] <= budget:
            groups[-1].append(i)
        else:
            groups.append([i])
    return groups


class ModelRunner:
    """One model: batched encode/decode off the event loop, plus its metadata."""

    def __init__(self, codec: Codec, settings: Settings, metrics: Metrics) -> None:
        self.codec = codec
        self.name = codec.name
        self.metrics = metrics
        self.executor = ThreadPoolExecutor(1, thread_name_prefix=f"wavtok-{self.name}")
        self.search_executor = ThreadPoolExecutor(
            1, thread_name_prefix=f"wavtok-{self.name}-search"
        )
        self._decode_dtype = checked_decode_dtype(settings.dtype, codec)
        self._budget = int(_BATCH_BUDGET_SECONDS * codec.sample_rate)
        self.encoder = self._batcher("encode", self._encode_batch, settings, self.executor)
        self.decoder = self._batcher("decode", self._decode_batch, settings, self.executor)
        self.searcher = self._batcher("search", self._encode_batch, settings, self.search_executor)

    def _batcher(
        self, op: str, fn, settings: Settings, executor: ThreadPoolExecutor
    ) -> DynamicBatcher:
        size = self.metrics.batch_size.labels(self.name, op)
        seconds = self.metrics.batch_seconds.labels(self.name, op)
        depth = self.metrics.queue_depth.labels(self.name, op)

        def on_batch(n: int, elapsed: float) -> None:
            size.observe(n)
            seconds.observe(elapsed)

        return DynamicBatcher(
            fn,
            executor,
            max_batch_size=settings.max_batch_size,
            max_wait_ms=settings.max_wait_ms,
            max_queue=settings.max_queue,
            on_batch=on_batch,
            on_queue=depth.set,
        )

    def info(self, default: bool) -> dict:
        c = self.codec
        return {
            "name": c.name,
            "sample_rate": c.sample_rate,
            "frame_rate": c.frame_rate,
            "hop_length": c.hop_length,
            "codebook_size": c.codebook_size,
            "codebook_id": c.codebook_id,
            "bitrate": c.bitrate,
            "causal": c.causal,
            "default": default,
        }

    def decode_precision(self):
        """The autocast that decoding runs under (`Settings.dtype`). Encoding never uses it: the
        tokens a server returns must not depend on how it was started."""
        return decode_autocast(self._decode_dtype, self.codec.device)

    # -- batch functions (executor thread) ---------------------------------------------------
    def _encode_batch(self, items: list[EncodeItem]) -> list[np.ndarray | BaseException]:
        results: list[np.ndarray | BaseException] = [RuntimeError("not run")] * len(items)
        lengths = [int(it.wav.shape[-1]) for it in items]
        groups = []
        for search in dict.fromkeys(it.search for it in items):
            # Items batch only with others of the same search settings.
            members = [i for i, it in enumerate(items) if it.search == search]
            for group in _groups([lengths[i] for i in members], self._budget):
                groups.append((search, [members[j] for j in group]))
        for search, group in groups:
            try:
                wav = torch.zeros(len(group), 1, max(lengths[i] for i in group))
                for row, i in enumerate(group):
                    wav[row, 0, : lengths[i]] = items[i].wav
                codes, code_lengths = encode_with(
                    self.codec,
                    wav,
                    torch.tensor([lengths[i] for i in group]),
                    search,
                    lambda group=group: all(items[i].abandoned.is_set() for i in group),
                )
                codes = codes.cpu().numpy()
                for row, i in enumerate(group):
                    results[i] = codes[row, : int(code_lengths[row])].astype(np.int64)
            except Exception as e:
                for i in group:
                    results[i] = e
        return results

    def _decode_batch(self, items: list[DecodeItem]) -> list[np.ndarray | BaseException]:
        results: list[np.ndarray | BaseException] = [RuntimeError("not run")] * len(items)
        hop = self.codec.hop_length
        frames = [int(it.codes.shape[-1]) for it in items]
        for group in _groups([f * hop for f in frames], self._budget):
            try:
                codes = torch.zeros(len(group), max(frames[i] for i in group), dtype=torch.long)
                for row, i in enumerate(group):
                    codes[row, : frames[i]] = items[i].codes
                with self.decode_precision():
                    audio, sample_lengths = self.codec.decode(
                        codes,
                        torch.tensor([frames[i] for i in group]),
                        torch.tensor([items[i].num_samples for i in group]),
                    )
                audio = audio.float().cpu().numpy()
                for row, i in enumerate(group):
                    results[i] = audio[row, 0, : int(sample_lengths[row])].copy()
            except Exception as e:
                for i in group:
                    results[i] = e
        return results

    # -- async API ------------------------------------------------------------------------------
    async def encode(self, wav: torch.Tensor, search: SearchSettings | None = None) -> np.ndarray:
        """(T,) samples at the model's rate -> (F,) int64 codes; with `search` (from
        `codec.search.settings_from` for this model) they are chosen by `search_encode`."""
        item = EncodeItem(wav, search)
        try:
            codes = await (self.encoder if search is None else self.searcher).submit(item)
        except asyncio.CancelledError:
            item.abandoned.set()
            raise
        self.metrics.audio_seconds.labels(self.name, "encode", "http").inc(
            wav.shape[-1] / self.codec.sample_rate
        )
        return codes

    async def decode(self, codes: torch.Tensor, num_samples: int) -> np.ndarray:
        """(F,) valid codes -> (T,) float32 samples, T = min(F * hop, num_samples)."""
        audio = await self.decoder.submit(DecodeItem(codes, num_samples))
        self.metrics.audio_seconds.labels(self.name, "decode", "http").inc(
            audio.shape[-1] / self.codec.sample_rate
        )
        return audio

    def warmup(self) -> None:
        """A dummy batched encode/decode (and streaming step) so first requests are not slow."""
        hop = self.codec.hop_length
        items = [EncodeItem(torch.zeros(hop * 8)), EncodeItem(torch.zeros(hop * 3 + 1))]
        for out in self._encode_batch(items):
            if isinstance(out, BaseException):
                raise out
        dec = [DecodeItem(torch.zeros(8, dtype=torch.long), hop * 8)]
        for out in self._decode_batch(dec):
            if isinstance(out, BaseException):
                raise out
        if self.codec.causal:
            enc = self.codec.streaming_encoder()
            enc.push(torch.zeros(1, hop * 2))
            enc.flush()
            self.codec.streaming_decoder().push(torch.zeros(1, 2, dtype=torch.long))

    async def close(self) -> None:
        await self.encoder.close()
        await self.searcher.close()
        await self.decoder.close()
        self.executor.shutdown(wait=False, cancel_futures=True)
        self.search_executor.shutdown(wait=False, cancel_futures=True)


def resolve(spec: str, models_dir: Path | None) -> Path:
    """A model directory from a path, a name under `models_dir`, or the codec's own lookup."""
    path = Path(spec).expanduser()
    if path.is_dir():
        return path
    if models_dir is not None and (models_dir / spec).is_dir():
        return models_dir / spec
    return resolve_model_dir(spec)


class ModelRegistry:
    """Loads the configured models in the background; `get` hands out runners once ready."""

    def __init__(self, settings: Settings, metrics: Metrics) -> None:
        self.settings = settings
        self.metrics = metrics
        self.runners: dict[str, ModelRunner] = {}
        self.default_name: str | None = None
        self.ready = False
        self.error: str | None = None
        self.stream_executor = ThreadPoolExecutor(
            settings.stream_workers, thread_name_prefix="wavtok-stream"
        )

    def _load_all(self) -> None:
        specs = [self.settings.default_model, *self.settings.models]
        for i, spec in enumerate(specs):
            path = resolve(spec, self.settings.models_dir)
            codec = Codec.from_pretrained(path, self.settings.device)
            if codec.name in self.runners:
                log.warning("model %r from %s already served; skipped", codec.name, path)
                continue
            runner = ModelRunner(codec, self.settings, self.metrics)
            if self.settings.warmup:
                runner.warmup()
            self.runners[codec.name] = runner
            if i == 0:
                self.default_name = codec.name
            log.info("model %r loaded from %s on %s", codec.name, path, self.settings.device)

    async def load(self) -> None:
        try:
            await asyncio.get_running_loop().run_in_executor(None, self._load_all)
        except Exception as e:
            self.error = f"{type(e).__name__}: {e}"
            log.error("model loading failed: %s", self.error)
            return
        for runner in self.runners.values():
            runner.encoder.start()
            runner.searcher.start()
            runner.decoder.start()
        self.ready = True
        self.metrics.ready.set(1)

    def get(self, name: str | None) -> ModelRunner:
        """The runner for `name` (default model when None); 503 while loading, 404 if unknown."""
        if not self.ready:
            if self.error:
                raise errors.APIError(503, "not_ready", f"model loading failed: {self.error}")
            raise errors.not_ready()
        key = name or self.default_name
        if key not in self.runners:
            raise errors.unknown_model(str(name), sorted(self.runners))
        return self.runners[key]

    async def close(self) -> None:
        for runner in self.runners.values():
            await runner.close()
        self.stream_executor.shutdown(wait=False, cancel_futures=True)
