"""RowBatcher's logic with an in-memory write function (the integration tests use ClickHouse)."""

from __future__ import annotations

import asyncio

from services.ledger.batcher import RowBatcher
from services.ledger.clickhouse import StorageUnavailable
from services.ledger.metrics import LedgerMetrics
from services.ledger.rows import RowChunk
from shared.log import get_logger
from tests.ledger.support import eventually


class RecordingWrite:
    def __init__(self, failures: int = 0) -> None:
        self.batches: list[list[str]] = []
        self.failures = failures

    async def __call__(self, chunks: list[RowChunk]) -> None:
        if self.failures:
            self.failures -= 1
            raise StorageUnavailable("ClickHouse away")
        self.batches.append([c.key for c in chunks])


class Settlements:
    """What the batcher settled (after its write) and handed back, batch by batch."""

    def __init__(self) -> None:
        self.settled: list[list[str]] = []
        self.handed_back: list[list[str]] = []

    async def settle(self, items: list[str]) -> None:
        self.settled.append(items)

    async def hand_back(self, items: list[str]) -> None:
        self.handed_back.append(items)


def chunk(key: str, rows: int = 1) -> RowChunk:
    return RowChunk(table="t", key=key, row_count=rows, columns=[[0] * rows])


def batcher(write: RecordingWrite, settlements: Settlements, **overrides) -> RowBatcher[str]:
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
    return RowBatcher(write, settlements.settle, settlements.hand_back, **options)


async def test_a_full_batch_is_written_at_once_then_settled_together():
    write, settled = RecordingWrite(), Settlements()
    rows = batcher(write, settled, max_rows=10)
    rows.start()
    rows.add("d0", chunk("e0", 5))
    rows.add("d1", chunk("e1", 5))
    await eventually(lambda: settled.settled, timeout=5, interval=0.01, what="the batch settled")
    assert write.batches == [["e0", "e1"]]
    assert settled.settled == [["d0", "d1"]]
    await rows.close(1)


async def test_a_batch_is_full_at_max_messages_whatever_its_rows():
    write, settled = RecordingWrite(), Settlements()
    rows = batcher(write, settled, max_rows=1_000, max_messages=3)
    rows.start()
    for i in range(3):
        rows.add(f"d{i}", chunk(f"e{i}"))
    await eventually(lambda: settled.settled, timeout=5, interval=0.01, what="the batch settled")
    assert settled.settled == [["d0", "d1", "d2"]]
    await rows.close(1)


async def test_deliveries_without_rows_are_settled_with_their_batch_and_an_empty_batch_writes_nothing():
    write, settled = RecordingWrite(), Settlements()
    rows = batcher(write, settled, max_seconds=0.05)
    rows.start()
    rows.add("rejected", None)
    await eventually(lambda: settled.settled, timeout=5, interval=0.01, what="the batch settled")
    assert settled.settled == [["rejected"]] and write.batches == []
    rows.add("rejected-2", None)
    rows.add("recorded", chunk("e"))
    await eventually(lambda: len(settled.settled) == 2, timeout=5, interval=0.01, what="the second batch")
    assert settled.settled[1] == ["rejected-2", "recorded"] and write.batches == [["e"]]
    await rows.close(1)


async def test_a_partial_batch_is_written_when_it_is_old_enough():
    write, settled = RecordingWrite(), Settlements()
    rows = batcher(write, settled, max_seconds=0.05)
    rows.start()
    rows.add("only", chunk("only"))
    await eventually(lambda: settled.settled, timeout=5, interval=0.01, what="the batch settled")
    assert write.batches == [["only"]]
    await rows.close(1)


async def test_a_batch_clickhouse_refuses_is_retried_until_it_is_taken_and_settled_only_then():
    write, settled = RecordingWrite(failures=3), Settlements()
    rows = batcher(write, settled, max_rows=1)
    rows.start()
    rows.add("kept", chunk("kept"))
    await eventually(lambda: settled.settled, timeout=5, interval=0.01, what="the batch settled")
    assert write.batches == [["kept"]] and write.failures == 0
    assert settled.settled == [["kept"]] and settled.handed_back == []
    assert rows.storage_healthy
    await rows.close(1)


async def test_nothing_is_settled_while_clickhouse_refuses():
    write, settled = RecordingWrite(failures=1_000_000), Settlements()
    rows = batcher(write, settled, max_rows=1)
    rows.start()
    rows.add("stuck", chunk("stuck"))
    await eventually(lambda: not rows.storage_healthy, timeout=5, interval=0.01, what="a refused write")
    await asyncio.sleep(0.1)
    assert settled.settled == [] and settled.handed_back == []
    await rows.close(1)


async def test_closing_writes_and_settles_what_waits_and_ignores_what_comes_after():
    write, settled = RecordingWrite(), Settlements()
    rows = batcher(write, settled)
    rows.start()
    rows.add("last", chunk("last"))
    await rows.close(1)
    assert write.batches == [["last"]] and settled.settled == [["last"]]
    # Left unsettled: the broker has it back when the connection closes.
    rows.add("late", chunk("late"))
    assert settled.settled == [["last"]] and settled.handed_back == []


async def test_rows_clickhouse_never_takes_are_handed_back_when_closing():
    write, settled = RecordingWrite(failures=1_000_000), Settlements()
    rows = batcher(write, settled, max_rows=1)
    rows.start()
    rows.add("stuck", chunk("stuck"))
    await eventually(lambda: not rows.storage_healthy, timeout=5, interval=0.01, what="a refused write")
    rows.add("waiting", chunk("waiting"))
    await rows.close(1)
    assert settled.settled == []
    assert sorted(key for batch in settled.handed_back for key in batch) == ["stuck", "waiting"]
