"""Holds event rows until a batch is full or old enough, then has it written in one go.

A handler submits the rows of one broker message and waits; the message is acknowledged
only when its batch is in ClickHouse. One batch is written while the next one fills, so
decoding and inserting overlap. When ClickHouse does not take a batch, the batch is
tried again with exponential backoff and its messages stay unacknowledged on the broker
(bounded by the prefetch window): nothing spins, nothing is lost if the process dies, and
redelivery after a crash is harmless because writes are idempotent.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from services.ledger.clickhouse import StorageUnavailable
from services.ledger.metrics import LedgerMetrics
from services.ledger.rows import RowChunk

WriteBatch = Callable[[list[RowChunk]], Awaitable[None]]


class BatchNotWritten(RuntimeError):
    """The ledger is stopping and could not write these rows: the message goes back to the queue."""


@dataclass(slots=True)
class _Pending:
    chunk: RowChunk
    written: asyncio.Future[None]


class RowBatcher:
    def __init__(
        self,
        write: WriteBatch,
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
        self._max_rows = max_rows
        self._max_messages = max_messages
        self._max_seconds = max_seconds
        self._retry_initial = retry_initial_seconds
        self._retry_max = retry_max_seconds
        self._metrics = metrics
        self._log = logger
        self._pending: list[_Pending] = []
        self._pending_rows = 0
        self._first_at = 0.0
        self._has_pending = asyncio.Event()
        self._full = asyncio.Event()
        self._closing = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.storage_healthy = True

    def start(self) -> None:
        self._task = asyncio.create_task(self._flush_loop(), name="ledger-batcher")

    async def submit(self, chunk: RowChunk) -> None:
        """Returns once `chunk` is in ClickHouse; raises `BatchNotWritten` if it never will be."""
        if self._closing.is_set():
            raise BatchNotWritten("the ledger is stopping")
        loop = asyncio.get_running_loop()
        pending = _Pending(chunk, loop.create_future())
        if not self._pending:
            self._first_at = loop.time()
            self._has_pending.set()
        self._pending.append(pending)
        self._pending_rows += chunk.row_count
        self._metrics.pending_rows.set(self._pending_rows)
        if self._pending_rows >= self._max_rows or len(self._pending) >= self._max_messages:
            self._full.set()
        await pending.written

    async def close(self, grace_seconds: float) -> None:
        """Write what is waiting (within `grace_seconds`), then refuse anything new."""
        self._closing.set()
        self._has_pending.set()
        if self._task is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._task), grace_seconds)
            except TimeoutError:
                self._task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._task
        self._fail(self._pending, BatchNotWritten("the ledger stopped before writing these rows"))
        self._pending = []

    async def _flush_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self._has_pending.wait()
            if not self._pending:
                if self._closing.is_set():
                    return
                self._has_pending.clear()
                continue
            wait = self._first_at + self._max_seconds - loop.time()
            if wait > 0 and not self._closing.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wait_full_or_closing(), wait)
            batch, self._pending, self._pending_rows = self._pending, [], 0
            self._full.clear()
            self._has_pending.clear()
            self._metrics.pending_rows.set(0)
            await self._write_until_done(batch)

    async def _wait_full_or_closing(self) -> None:
        full = asyncio.create_task(self._full.wait())
        closing = asyncio.create_task(self._closing.wait())
        try:
            await asyncio.wait({full, closing}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            full.cancel()
            closing.cancel()

    async def _write_until_done(self, batch: list[_Pending]) -> None:
        rows = sum(p.chunk.row_count for p in batch)
        delay = self._retry_initial
        loop = asyncio.get_running_loop()
        while True:
            started = loop.time()
            try:
                await self._write([p.chunk for p in batch])
            except StorageUnavailable as error:
                self.storage_healthy = False
                self._metrics.clickhouse_up.set(0)
                self._metrics.insert_failures.inc()
                if self._closing.is_set():
                    self._log.warning("ledger.batch_not_written", rows=rows, messages=len(batch), error=str(error))
                    self._fail(batch, BatchNotWritten(str(error)))
                    return
                self._log.warning(
                    "ledger.clickhouse_unavailable",
                    rows=rows,
                    messages=len(batch),
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
            self._metrics.batch_messages.observe(len(batch))
            for pending in batch:
                if not pending.written.done():
                    pending.written.set_result(None)
            self._log.debug("ledger.batch_written", rows=rows, messages=len(batch), seconds=round(elapsed, 4))
            return

    @staticmethod
    def _fail(batch: list[_Pending], error: BaseException) -> None:
        for pending in batch:
            if not pending.written.done():
                pending.written.set_exception(error)
