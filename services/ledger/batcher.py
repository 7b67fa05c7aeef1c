"""Holds deliveries and their rows until a batch is full or old enough, then writes it in one go.

The consumer adds each delivery with its rows (`add`, synchronous: no task or future per
delivery); a batch is written with one insert per table, and only then settled, all its
deliveries together (`settle`: the ledger's one multiple-ack). One batch is written while
the next one fills, so decoding and inserting overlap. When ClickHouse does not take a
batch, the batch is tried again with exponential backoff and its deliveries stay
unacknowledged on the broker (bounded by the prefetch window): nothing spins, nothing is
lost if the process dies, and redelivery after a crash is harmless because writes are
idempotent. At a stop, what could not be written is handed back (`hand_back`).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any, Generic, TypeVar

from services.ledger.clickhouse import StorageUnavailable
from services.ledger.metrics import LedgerMetrics
from services.ledger.rows import RowChunk

Item = TypeVar("Item")
WriteBatch = Callable[[list[RowChunk]], Awaitable[None]]


class RowBatcher(Generic[Item]):
    """Batches of `Item`s (deliveries), each with the rows it becomes (or none)."""

    def __init__(
        self,
        write: WriteBatch,
        settle: Callable[[list[Item]], Awaitable[None]],
        hand_back: Callable[[list[Item]], Awaitable[None]],
        *,
        max_rows: int,
        max_messages: int,
        max_seconds: float,
        retry_initial_seconds: float,
        retry_max_seconds: float,
        metrics: LedgerMetrics,
        logger: Any,
    ) -> None:
        self._write = write
        self._settle = settle
        self._hand_back = hand_back
        self._max_rows = max_rows
        self._max_messages = max_messages
        self._max_seconds = max_seconds
        self._retry_initial = retry_initial_seconds
        self._retry_max = retry_max_seconds
        self._metrics = metrics
        self._log = logger
        self._items: list[Item] = []
        self._chunks: list[RowChunk] = []
        self._rows = 0
        self._first_at = 0.0
        self._has_pending = asyncio.Event()
        self._full = asyncio.Event()
        self._closing = asyncio.Event()
        self._closed = False
        self._task: asyncio.Task[None] | None = None
        self.storage_healthy = True

    def start(self) -> None:
        self._task = asyncio.create_task(self._flush_loop(), name="ledger-batcher")

    def add(self, item: Item, chunk: RowChunk | None) -> None:
        """`item` is settled once `chunk` (its rows; None: nothing to write) is in ClickHouse."""
        if self._closed:
            # Arrived after the final flush: left unsettled, it goes back to its queue
            # when the connection closes.
            return
        if not self._items:
            self._first_at = asyncio.get_running_loop().time()
            self._has_pending.set()
        self._items.append(item)
        if chunk is not None and chunk.row_count:
            self._chunks.append(chunk)
            self._rows += chunk.row_count
        if self._rows >= self._max_rows or len(self._items) >= self._max_messages:
            self._full.set()

    async def close(self, grace_seconds: float) -> None:
        """Write and settle what is waiting (within `grace_seconds`), hand back the rest."""
        self._closing.set()
        self._has_pending.set()
        if self._task is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._task), grace_seconds)
            except TimeoutError:
                self._task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._task
        self._closed = True
        leftover, self._items, self._chunks, self._rows = self._items, [], [], 0
        if leftover:
            await self._hand_back(leftover)

    async def _flush_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self._has_pending.wait()
            if not self._items:
                if self._closing.is_set():
                    return
                self._has_pending.clear()
                continue
            wait = self._first_at + self._max_seconds - loop.time()
            if wait > 0 and not self._closing.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wait_full_or_closing(), wait)
            items, chunks, rows = self._items, self._chunks, self._rows
            self._items, self._chunks, self._rows = [], [], 0
            self._full.clear()
            self._has_pending.clear()
            self._metrics.pending_rows.set(0)
            written = await self._write_until_done(chunks, rows, len(items))
            try:
                await (self._settle if written else self._hand_back)(items)
            except Exception as error:  # the loop must outlive a broken channel
                # Left unsettled: the broker returns them when their channel closes.
                self._log.error("ledger.settle_failed", messages=len(items), error=repr(error)[:500])

    async def _wait_full_or_closing(self) -> None:
        full = asyncio.create_task(self._full.wait())
        closing = asyncio.create_task(self._closing.wait())
        try:
            await asyncio.wait({full, closing}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            full.cancel()
            closing.cancel()

    async def _write_until_done(self, chunks: list[RowChunk], rows: int, messages: int) -> bool:
        """True once the batch is written; False if the ledger stops first."""
        if not chunks:
            return True
        delay = self._retry_initial
        loop = asyncio.get_running_loop()
        while True:
            started = loop.time()
            try:
                await self._write(chunks)
            except StorageUnavailable as error:
                self.storage_healthy = False
                self._metrics.clickhouse_up.set(0)
                self._metrics.insert_failures.inc()
                if self._closing.is_set():
                    self._log.warning("ledger.batch_not_written", rows=rows, messages=messages, error=str(error))
                    return False
                self._log.warning(
                    "ledger.clickhouse_unavailable",
                    rows=rows,
                    messages=messages,
                    retry_in_seconds=round(delay, 2),
                    error=str(error),
                )
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._closing.wait(), delay)
                delay = min(delay * 2, self._retry_max)
                continue
            elapsed = loop.time() - started
            if not self.storage_healthy:
                self._log.info("ledger.clickhouse_back", rows=rows)
            self.storage_healthy = True
            self._metrics.clickhouse_up.set(1)
            self._metrics.insert_seconds.observe(elapsed)
            self._metrics.batch_rows.observe(rows)
            self._metrics.batch_messages.observe(messages)
            self._log.debug("ledger.batch_written", rows=rows, messages=messages, seconds=round(elapsed, 4))
            return True
