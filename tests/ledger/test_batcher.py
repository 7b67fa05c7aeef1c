"""RowBatcher's logic with an in-memory write function (the integration tests use ClickHouse)."""

from __future__ import annotations

import asyncio

import pytest

from services.ledger.batcher import BatchNotWritten, RowBatcher
from services.ledger.clickhouse import StorageUnavailable
from services.ledger.metrics import LedgerMetrics
from services.ledger.rows import RowChunk
from shared.log import get_logger


class RecordingWrite:
    def __init__(self, failures: int = 0) -> None:
        self.batches: list[list[str]] = []
        self.failures = failures

    async def __call__(self, chunks: list[RowChunk]) -> None:
        if self.failures:
            self.failures -= 1
            raise StorageUnavailable("ClickHouse away")
        self.batches.append([c.key for c in chunks])


def chunk(key: str, rows: int = 1) -> RowChunk:
    return RowChunk(table="t", key=key, row_count=rows, columns=[[0] * rows])


def batcher(write, **overrides) -> RowBatcher:
    options = dict(
        max_rows=10,
        max_messages=100,
        max_seconds=60.0,
        retry_initial_seconds=0.01,
        retry_max_seconds=0.05,
        metrics=LedgerMetrics(),
        logger=get_logger("test"),
    )
    options.update(overrides)
    return RowBatcher(write, **options)


async def test_a_full_batch_is_written_at_once_and_releases_every_waiting_submitter():
    write = RecordingWrite()
    rows = batcher(write, max_rows=10)
    rows.start()
    await asyncio.wait_for(asyncio.gather(*(rows.submit(chunk(f"e{i}", 5)) for i in range(2))), 5)
    assert write.batches == [["e0", "e1"]]
    await rows.close(1)


async def test_a_partial_batch_is_written_when_it_is_old_enough():
    write = RecordingWrite()
    rows = batcher(write, max_seconds=0.05)
    rows.start()
    await asyncio.wait_for(rows.submit(chunk("only")), 5)
    assert write.batches == [["only"]]
    await rows.close(1)


async def test_a_batch_clickhouse_refuses_is_retried_until_it_is_taken():
    write = RecordingWrite(failures=3)
    rows = batcher(write, max_rows=1)
    rows.start()
    await asyncio.wait_for(rows.submit(chunk("kept")), 5)
    assert write.batches == [["kept"]] and write.failures == 0
    assert rows.storage_healthy
    await rows.close(1)


async def test_closing_writes_what_waits_and_refuses_what_comes_after():
    write = RecordingWrite()
    rows = batcher(write)
    rows.start()
    waiting = asyncio.create_task(rows.submit(chunk("last")))
    await asyncio.sleep(0)
    await rows.close(1)
    await asyncio.wait_for(waiting, 1)
    assert write.batches == [["last"]]
    with pytest.raises(BatchNotWritten):
        await rows.submit(chunk("late"))


async def test_rows_clickhouse_never_takes_go_back_when_closing():
    write = RecordingWrite(failures=1_000_000)
    rows = batcher(write, max_rows=1)
    rows.start()
    waiting = asyncio.create_task(rows.submit(chunk("stuck")))
    await asyncio.sleep(0.1)
    assert not rows.storage_healthy
    await rows.close(1)
    with pytest.raises(BatchNotWritten):
        await asyncio.wait_for(waiting, 1)
