"""Micro-batching: many concurrent requests, one batched call in a worker thread.

A forward pass over 8 queries costs little more than over one, so under load the service waits up to
`max_wait_ms` for company (or until `max_size` items are queued) and runs them together. The call runs in a
dedicated thread so the event loop keeps accepting requests while the model works; while one batch runs,
the next one fills up, so throughput grows with load and a lone request pays at most `max_wait_ms`.

Requests from different clients share a batch, so one client's input must never fail another's request: a
batch function may return an exception in an item's slot (that item alone fails), and when the batched
call itself raises, every item is run again on its own so each gets its own result or its own error.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Generic, TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")


@dataclass(frozen=True)
class BatchOutcome(Generic[Result]):
    """One item's result plus what the batch it rode in looked like (for timings and metrics)."""

    value: Result
    batch_size: int
    run_ms: float
    wait_ms: float


class MicroBatcher(Generic[Item, Result]):
    """Collect items until `max_size` or `max_wait_ms`, then run `fn(items)` once in a worker thread.

    `fn` must return one result per item, in order; an `Exception` instance in an item's slot is raised to
    that item's request only. When `fn` raises for a batch of several items, each item is retried alone
    (`fn([item])`), so a poison item fails only its own request; the batcher itself keeps running.
    `expect_more(n)` says whether anyone else may join a batch of n soon (e.g. other requests are in
    flight); when it says no, the batch runs without waiting, so a lone request never pays `max_wait_ms`.
    `thread_init` runs once in the worker thread (for per-thread settings such as OpenMP's thread count).
    """

    def __init__(
        self,
        fn: Callable[[list[Item]], Sequence[Result | Exception]],
        max_size: int,
        max_wait_ms: float,
        name: str,
        on_batch: Callable[[int, float], None] | None = None,
        expect_more: Callable[[int], bool] | None = None,
        thread_init: Callable[[], None] | None = None,
    ) -> None:
        if max_size < 1:
            raise ValueError(f"max_size must be >= 1, got {max_size}")
        if max_wait_ms < 0:
            raise ValueError(f"max_wait_ms must be >= 0, got {max_wait_ms}")
        self._fn = fn
        self._max_size = max_size
        self._max_wait = max_wait_ms / 1000.0
        self._name = name
        self._on_batch = on_batch
        self._expect_more = expect_more
        self._queue: asyncio.Queue[tuple[Item, asyncio.Future[BatchOutcome[Result]], float]] | None = None
        self._task: asyncio.Task[None] | None = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"batch-{name}", initializer=thread_init)

    async def start(self) -> None:
        """Start the collector task on the running loop."""
        self._queue = asyncio.Queue()
        self._task = asyncio.create_task(self._run(), name=f"batcher-{self._name}")

    async def stop(self) -> None:
        """Stop collecting; requests still queued get a RuntimeError rather than hanging."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._queue is not None:
            while not self._queue.empty():
                _, future, _ = self._queue.get_nowait()
                if not future.done():
                    future.set_exception(RuntimeError(f"{self._name} batcher stopped"))
        self._executor.shutdown(wait=False, cancel_futures=True)

    async def submit(self, item: Item) -> BatchOutcome[Result]:
        """Queue one item and wait for its result."""
        if self._queue is None or self._task is None:
            raise RuntimeError(f"{self._name} batcher is not running")
        future: asyncio.Future[BatchOutcome[Result]] = asyncio.get_running_loop().create_future()
        await self._queue.put((item, future, time.perf_counter()))
        return await future

    async def _collect(self) -> list[tuple[Item, asyncio.Future[BatchOutcome[Result]], float]]:
        """Block for a first item, then gather what arrives within `max_wait_ms` (sleep + drain, no racy
        timed gets), never more than `max_size`; requests cancelled while queued are dropped."""
        assert self._queue is not None
        batch = [await self._queue.get()]
        self._drain(batch)
        worth_waiting = self._expect_more is None or self._expect_more(len(batch))
        if len(batch) < self._max_size and self._max_wait > 0 and worth_waiting:
            await asyncio.sleep(self._max_wait)
            self._drain(batch)
        return [entry for entry in batch if not entry[1].done()]

    def _drain(self, batch: list[tuple[Item, asyncio.Future[BatchOutcome[Result]], float]]) -> None:
        assert self._queue is not None
        while len(batch) < self._max_size and not self._queue.empty():
            batch.append(self._queue.get_nowait())

    def _run_isolated(self, items: list[Item]) -> list[Result | Exception]:
        """`fn(items)`; if that raises or miscounts, `fn([item])` per item, each failure kept to its item."""
        try:
            results = list(self._fn(items))
            if len(results) == len(items):
                return results
            failure: Exception = RuntimeError(f"{self._name} returned {len(results)} results for {len(items)} items")
        except Exception as exc:
            failure = exc
        if len(items) == 1:
            return [failure]
        return [self._run_isolated([item])[0] for item in items]

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = await self._collect()
            if not batch:
                continue
            items = [item for item, _, _ in batch]
            started = time.perf_counter()
            try:
                results = await loop.run_in_executor(self._executor, self._run_isolated, items)
            except Exception as exc:  # the executor itself failed (e.g. shut down): nothing ran
                for _, future, _ in batch:
                    if not future.done():
                        future.set_exception(exc)
                continue
            run_ms = (time.perf_counter() - started) * 1000.0
            if self._on_batch is not None:
                self._on_batch(len(items), run_ms)
            for (_, future, queued), value in zip(batch, results, strict=True):
                if future.done():
                    continue
                if isinstance(value, Exception):
                    future.set_exception(value)
                else:
                    future.set_result(BatchOutcome(value, len(items), run_ms, (started - queued) * 1000.0))
