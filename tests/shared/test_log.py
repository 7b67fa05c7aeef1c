"""The log writer: info lines wait for one write a loop tick, warnings go at once."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import multiprocessing
from multiprocessing.context import ForkContext, SpawnContext
from pathlib import Path

import pytest
import structlog

from shared.log import (
    FLUSH_AFTER_SECONDS,
    PIPE_ATOMIC_BYTES,
    DeferredFlushLogger,
    _BehindWaitingLines,
    _DeferredFlushLoggerFactory,
    _json_line,
)


class _Sink(io.RawIOBase):
    """A raw stream that records every write reaching it (what a pipe's reader would get)."""

    def __init__(self) -> None:
        self.writes: list[bytes] = []

    def writable(self) -> bool:
        return True

    def write(self, data: bytes) -> int:  # type: ignore[override]
        self.writes.append(bytes(data))
        return len(data)

    def lines(self) -> list[bytes]:
        return b"".join(self.writes).splitlines()


def _logger() -> tuple[DeferredFlushLogger, _Sink]:
    sink = _Sink()
    return DeferredFlushLogger(io.BufferedWriter(sink)), sink  # type: ignore[type-var]


async def test_info_lines_wait_and_leave_in_one_write() -> None:
    logger, sink = _logger()
    for n in range(20):
        logger.info(b"line %d" % n)
    assert sink.writes == []
    await asyncio.sleep(FLUSH_AFTER_SECONDS * 3)
    assert len(sink.writes) == 1
    assert sink.lines() == [b"line %d" % n for n in range(20)]


async def test_lines_wait_without_a_buffered_stdout() -> None:
    # PYTHONUNBUFFERED=1 (the Docker image, `rsms up`) gives a stdout with no buffer.
    sink = _Sink()
    logger = DeferredFlushLogger(sink)  # type: ignore[arg-type]
    for n in range(20):
        logger.info(b"line %d" % n)
    assert sink.writes == []
    await asyncio.sleep(FLUSH_AFTER_SECONDS * 3)
    assert len(sink.writes) == 1
    assert sink.lines() == [b"line %d" % n for n in range(20)]


async def test_a_write_holds_whole_lines_within_what_a_pipe_takes_whole() -> None:
    sink = _Sink()
    logger = DeferredFlushLogger(sink)  # type: ignore[arg-type]
    lines = [b"%04d" % n + b"x" * 300 for n in range(100)] + [b"y" * (PIPE_ATOMIC_BYTES + 10), b"last"]
    for line in lines:
        logger.info(line)
    logger.flush()
    assert sink.lines() == lines
    assert all(write.endswith(b"\n") for write in sink.writes)
    assert all(len(write) <= PIPE_ATOMIC_BYTES for write in sink.writes if not write.startswith(b"y"))
    assert len(sink.writes) < len(lines) // 5


async def test_a_warning_is_written_at_once_behind_the_lines_before_it() -> None:
    logger, sink = _logger()
    logger.info(b"first")
    logger.warning(b"second")
    assert sink.lines() == [b"first", b"second"]
    logger.error(b"third")
    assert sink.lines() == [b"first", b"second", b"third"]


def test_without_an_event_loop_every_line_is_written_at_once() -> None:
    logger, sink = _logger()
    logger.info(b"alone")
    assert sink.lines() == [b"alone"]


def test_a_line_after_another_loops_pending_flush_is_not_stranded() -> None:
    logger, sink = _logger()

    async def log(line: bytes) -> None:
        logger.info(line)

    asyncio.run(log(b"from a loop that closes before its flush runs"))
    asyncio.run(log(b"from the next loop"))
    assert sink.lines() == [b"from a loop that closes before its flush runs", b"from the next loop"]


async def test_structlog_renders_through_it() -> None:
    logger, sink = _logger()
    bound = structlog.wrap_logger(
        logger,
        processors=[structlog.processors.add_log_level, structlog.processors.JSONRenderer(serializer=_json_line)],
    )
    bound.info("sms_accepted", message_id="m-1")
    bound.warning("slow", ms=3)
    assert [json.loads(line) for line in sink.lines()] == [
        {"message_id": "m-1", "event": "sms_accepted", "level": "info"},
        {"ms": 3, "event": "slow", "level": "warning"},
    ]


def test_a_library_warning_goes_behind_the_lines_waiting() -> None:
    sink = _Sink()
    waiting = DeferredFlushLogger(sink)  # type: ignore[arg-type]
    handler = _BehindWaitingLines(io.TextIOWrapper(sink, write_through=True), waiting)  # type: ignore[type-var]

    async def log() -> None:
        waiting.info(b"first")
        handler.emit(logging.makeLogRecord({"msg": "second", "levelno": logging.WARNING}))

    asyncio.run(log())
    assert sink.lines() == [b"first", b"second"]


def _log_in_a_worker(path: str) -> None:
    async def serve() -> None:
        logger.info(b"the worker's last line")  # its flush was due after the loop ended

    logger = _DeferredFlushLoggerFactory(Path(path).open("ab"))()  # noqa: SIM115 (flushed at exit)
    asyncio.run(serve())


@pytest.mark.parametrize(
    "context", [multiprocessing.get_context("spawn"), multiprocessing.get_context("fork")], ids=["spawn", "fork"]
)
def test_a_worker_writes_its_waiting_lines_when_it_exits(tmp_path: Path, context: SpawnContext | ForkContext) -> None:
    # uvicorn's workers are multiprocessing spawn children that set their logging up anew,
    # and end through sys.exit; a forked child ends in os._exit, past atexit.
    path = tmp_path / "out"
    worker = context.Process(target=_log_in_a_worker, args=(str(path),))
    worker.start()
    worker.join(30)
    assert worker.exitcode == 0
    assert path.read_bytes().splitlines() == [b"the worker's last line"]


def test_lines_waiting_at_a_fork_are_written_once(tmp_path: Path) -> None:
    path = tmp_path / "out"
    factory = _DeferredFlushLoggerFactory(path.open("ab"))

    async def fork_while_a_line_waits() -> None:
        factory.logger.info(b"before the fork")
        worker = multiprocessing.get_context("fork").Process(target=factory.logger.info, args=(b"in the child",))
        worker.start()
        worker.join(10)

    asyncio.run(fork_while_a_line_waits())
    factory.logger.flush()
    assert sorted(path.read_bytes().splitlines()) == [b"before the fork", b"in the child"]
