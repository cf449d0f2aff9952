"""Dynamic batching: gather concurrent requests for one model, run them as one padded batch.

A `DynamicBatcher` owns a bounded queue and one collector task. The task takes the first
waiting item, then keeps collecting until `max_batch_size` items or `max_wait_ms` have passed,
and runs `run_batch(items)` in the given executor, never on the event loop. `run_batch` returns
one result (or exception) per item, so a bad item fails alone. Items whose caller went away
(cancelled future) are dropped before the batch runs.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Generic, TypeVar

In = TypeVar("In")
Out = TypeVar("Out")


class QueueFull(Exception):
    """The batcher's queue is at `max_queue`; the caller should answer 503."""


class BatcherClosed(Exception):
    """The batcher was shut down before the item ran."""


@dataclass
class _Pending(Generic[In, Out]):
    item: In
    future: asyncio.Future[Out]
    enqueued: float = field(default_factory=time.perf_counter)


class DynamicBatcher(Generic[In, Out]):
    """Batches `submit`ted items; results come back per item in submission order."""

    def __init__(
        self,
        run_batch: Callable[[list[In]], Sequence[Out | BaseException]],
        executor: Executor,
        *,
        max_batch_size: int = 8,
        max_wait_ms: float = 10.0,
        max_queue: int = 64,
        on_batch: Callable[[int, float], None] | None = None,
        on_queue: Callable[[int], None] | None = None,
    ) -> None:
        if max_batch_size < 1 or max_queue < 1:
            raise ValueError("max_batch_size and max_queue must be at least 1")
        self.run_batch = run_batch
        self.executor = executor
        self.max_batch_size = max_batch_size
        self.max_wait = max_wait_ms / 1000.0
        self.max_queue = max_queue
        self.on_batch = on_batch
        self.on_queue = on_queue
        self._queue: collections.deque[_Pending[In, Out]] = collections.deque()
        self._wakeup: asyncio.Event | None = None
        self._task: asyncio.Task | None = None
        self._closed = False

    @property
    def depth(self) -> int:
        """Items waiting (not yet in a running batch)."""
        return len(self._queue)

    def start(self) -> None:
        """Start the collector task on the running loop."""
        if self._task is None:
            self._wakeup = asyncio.Event()
            self._task = asyncio.get_running_loop().create_task(self._collect_forever())

    async def close(self) -> None:
        """Stop collecting; waiting items fail with `BatcherClosed`."""
        self._closed = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        while self._queue:
            pending = self._queue.popleft()
            if not pending.future.done():
                pending.future.set_exception(BatcherClosed("server is shutting down"))
        self._report_depth()

    async def submit(self, item: In) -> Out:
        """Queue `item` and wait for its result. Cancelling the wait withdraws the item."""
        if self._closed:
            raise BatcherClosed("server is shutting down")
        self.start()
        self._drop_cancelled()
        if len(self._queue) >= self.max_queue:
            raise QueueFull(f"queue is full ({self.max_queue} waiting)")
        future: asyncio.Future[Out] = asyncio.get_running_loop().create_future()
        self._queue.append(_Pending(item, future))
        self._report_depth()
        assert self._wakeup is not None
        self._wakeup.set()
        try:
            return await future
        finally:
            # A cancelled caller leaves a cancelled future behind; drop it now so the slot frees.
            if future.cancelled():
                self._drop_cancelled()

    def _drop_cancelled(self) -> None:
        if any(p.future.done() for p in self._queue):
            self._queue = collections.deque(p for p in self._queue if not p.future.done())
            self._report_depth()

    def _report_depth(self) -> None:
        if self.on_queue is not None:
            self.on_queue(len(self._queue))

    async def _next_batch(self) -> list[_Pending[In, Out]]:
        assert self._wakeup is not None
        while True:
            self._drop_cancelled()
            if self._queue:
                break
            self._wakeup.clear()
            await self._wakeup.wait()
        deadline = self._queue[0].enqueued + self.max_wait
        while len(self._queue) < self.max_batch_size:
            remaining = deadline - time.perf_counter()
            if remaining <= 0:
                break
            self._wakeup.clear()
            try:
                await asyncio.wait_for(self._wakeup.wait(), remaining)
            except TimeoutError:
                break
            self._drop_cancelled()
        count = min(self.max_batch_size, len(self._queue))
        batch = [self._queue.popleft() for _ in range(count)]
        self._report_depth()
        return [p for p in batch if not p.future.done()]

    async def _collect_forever(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = await self._next_batch()
            if not batch:
                continue
            items = [p.item for p in batch]
            start = time.perf_counter()
            try:
                results: Sequence[Out | BaseException] = await loop.run_in_executor(
                    self.executor, self.run_batch, items
                )
                if len(results) != len(batch):
                    raise RuntimeError(f"run_batch gave {len(results)} results for {len(batch)}")
            except asyncio.CancelledError:
                for p in batch:
                    if not p.future.done():
                        p.future.set_exception(BatcherClosed("server is shutting down"))
                raise
            except Exception as e:  # the whole batch failed; every caller sees why
                results = [e] * len(batch)
            if self.on_batch is not None:
                self.on_batch(len(batch), time.perf_counter() - start)
            for pending, result in zip(batch, results, strict=True):
                if pending.future.done():  # the caller left while the batch ran
                    continue
                if isinstance(result, BaseException):
                    pending.future.set_exception(result)
                else:
                    pending.future.set_result(result)
