"""Structured logging for every service: one JSON object a line, on stdout.

Log lines carry ids and counts (message id, project, key id, recipient count), never a
message body, a phone number list or an API key: those are personal data or secrets.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import logging
import os
import re
import signal
import sys
import threading
from collections.abc import Iterator
from multiprocessing import util
from typing import Any, BinaryIO, TextIO

import msgspec
import structlog

# A line a request (or more) at thousands a second: msgspec renders it to bytes several
# times faster than json.dumps, and the bytes go to stdout's buffer without a str between.
# What msgspec cannot encode is logged as its str(), as structlog's own fallback does.
_line_encoder = msgspec.json.Encoder(enc_hook=str)


def _json_line(event: Any, **_: Any) -> bytes:
    return _line_encoder.encode(event)


FLUSH_AFTER_SECONDS = 0.05
"""How long an info or debug line may wait in the process before it is written."""
PIPE_ATOMIC_BYTES = 4096
"""What one write of whole lines is kept within (POSIX PIPE_BUF, Linux's): uvicorn's workers
share the service's stdout, and a pipe takes a write of at most this many bytes whole, so
lines of two processes never mix."""


class DeferredFlushLogger:
    """structlog's `BytesLogger` without a write per line: info and debug lines wait in the
    logger up to `FLUSH_AFTER_SECONDS`, then go in as few writes as `PIPE_ATOMIC_BYTES`
    allows with every line logged meanwhile; a warning or worse is written at once, behind
    the lines before it.

    Under load a service logs a line per request, and a write per line (a system call, and a
    wake-up of the reader: `rsms up`'s supervisor) was 4-9 % of ingest's CPU. The lines wait
    here, not in the file's buffer: with PYTHONUNBUFFERED=1 (the Docker image, `rsms up`)
    stdout has none, and every line was a write of its own. What a kill -9 can lose is the
    last 50 ms of info lines; never a warning or an error. Off an event loop (a thread of
    chDB's, a command without a loop) every line is written at once.
    """

    __slots__ = ("_file", "_lines", "_lock", "_pending")

    def __init__(self, file: BinaryIO) -> None:
        self._file = file
        self._lock = threading.Lock()
        self._lines: list[bytes] = []
        """Lines not written yet, without their newlines."""
        self._pending: asyncio.AbstractEventLoop | None = None
        """The loop a flush is scheduled on, if any."""

    def _write_later(self, message: bytes) -> None:
        try:
            loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        with self._lock:
            self._lines.append(message)
            pending = self._pending
            if loop is not None and pending is loop:
                return
            if loop is not None and pending is None:
                self._pending = loop
                loop.call_later(FLUSH_AFTER_SECONDS, self.flush)
                return
        # No loop here, or another loop's flush is pending (a thread's, or one that has
        # closed and will never run it): write now.
        self.flush()

    def _write_now(self, message: bytes) -> None:
        with self._lock:
            self._lines.append(message)
        self.flush()

    def flush(self) -> None:
        # Written under the lock: lines taken by one thread never overtake another's.
        with self._lock:
            self._pending = None
            lines, self._lines = self._lines, []
            # stdout closed: the reader went away, or the interpreter is exiting.
            with contextlib.suppress(OSError, ValueError):
                for chunk in _chunks(lines, PIPE_ATOMIC_BYTES):
                    self._file.write(chunk)
                self._file.flush()

    def after_fork(self) -> None:
        """In a forked child (`os.fork`, or multiprocessing's fork start method): a lock of
        its own (the parent's may have been held by another thread at the fork), no flush
        pending on the parent's loop, and a flush at its exit. The lines waiting were
        written before the fork (the `before` hook), so none is written twice."""
        self._lock = threading.Lock()
        self._pending = None
        self._lines = []
        _flush_at_exit_of_a_child(self)

    msg = debug = info = _write_later
    warning = warn = error = err = critical = fatal = exception = failure = log = _write_now


def exit_normally_on_stop_signals() -> None:
    """SIGTERM and SIGINT end this process as a normal exit (`SystemExit(0)`), so `atexit`
    and the exit finalizers write the lines still waiting. uvicorn raises the signal that
    stopped it again after its graceful stop: with the default handler the process would
    die of it and those lines would be lost."""
    for stop in (signal.SIGTERM, signal.SIGINT):
        signal.signal(stop, _exit_normally)


def _exit_normally(signum: int, frame: object) -> None:
    raise SystemExit(0)


def _flush_at_exit_of_a_child(logger: DeferredFlushLogger) -> None:
    """A child multiprocessing forked ends in `os._exit`, past `atexit`; its exit finalizers
    still run, and flush what waits. (A spawned child, as uvicorn's workers are, ends through
    `sys.exit`, and any other process at its exit: they run there too, and the second flush
    finds nothing. A process killed by a signal runs neither.)"""
    util.Finalize(None, logger.flush, exitpriority=0)


def _chunks(lines: list[bytes], limit: int) -> Iterator[bytes]:
    """`lines`, each ended by a newline, joined into pieces of at most `limit` bytes (a
    longer line is a piece of its own)."""
    start, size = 0, 0
    for end, line in enumerate(lines):
        if size and size + len(line) + 1 > limit:
            yield b"\n".join(lines[start:end]) + b"\n"
            start, size = end, 0
        size += len(line) + 1
    if size:
        yield b"\n".join(lines[start:]) + b"\n"


class _DeferredFlushLoggerFactory:
    def __init__(self, file: BinaryIO) -> None:
        self.logger = DeferredFlushLogger(file)
        atexit.register(self.logger.flush)
        _flush_at_exit_of_a_child(self.logger)
        os.register_at_fork(before=self.logger.flush, after_in_child=self.logger.after_fork)

    def __call__(self, *args: Any) -> DeferredFlushLogger:
        return self.logger


def configure_logging(service: str, level: str = "INFO", fmt: str = "json") -> None:
    json_lines = fmt == "json"
    renderer: Any = (
        structlog.processors.JSONRenderer(serializer=_json_line)
        if json_lines
        else structlog.dev.ConsoleRenderer(colors=sys.stdout.isatty())
    )
    factory = _DeferredFlushLoggerFactory(sys.stdout.buffer) if json_lines else None
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level)),
        logger_factory=factory or structlog.PrintLoggerFactory(sys.stdout),
        cache_logger_on_first_use=True,
    )
    structlog.contextvars.bind_contextvars(service=service)
    # The standard library's handler writes str: the same JSON, rendered by json.dumps.
    _route_library_logs(
        structlog.processors.JSONRenderer() if json_lines else renderer, factory.logger if factory else None
    )


class _BehindWaitingLines(logging.StreamHandler):  # type: ignore[type-arg]
    """A stream handler whose lines go out behind the structlog lines still waiting in
    `waiting` (written first), as they would through one shared buffer."""

    def __init__(self, stream: TextIO, waiting: DeferredFlushLogger | None) -> None:
        super().__init__(stream)
        self._waiting = waiting

    def emit(self, record: logging.LogRecord) -> None:
        if self._waiting is not None:
            self._waiting.flush()
        super().emit(record)


def _route_library_logs(renderer: Any, waiting: DeferredFlushLogger | None) -> None:
    """Libraries (aio-pika, FastStream, httpx) log through the standard library: render their
    warnings and errors as the same structured lines, so one parser reads every line."""
    handler = _BehindWaitingLines(sys.stdout, waiting)
    handler.setLevel(logging.WARNING)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[
                structlog.contextvars.merge_contextvars,
                structlog.stdlib.add_log_level,
                structlog.stdlib.add_logger_name,
                structlog.processors.TimeStamper(fmt="iso", utc=True),
            ],
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.format_exc_info,
                renderer,
            ],
        )
    )
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(logging.WARNING)
    # FastStream gives its loggers a colourised handler of their own unless one for
    # stdout is already there: this one is.
    for name in ("faststream", "faststream.access.rabbit"):
        library = logging.getLogger(name)
        library.handlers = [handler]
        library.propagate = False


def get_logger(name: str) -> Any:
    return structlog.get_logger(name)


# The password of a URL (`scheme://user:password@host`, each entry of a host list).
_URL_PASSWORD = re.compile(r"(://[^:/@,\s]*:)[^@/\s]*@")


def without_passwords(text: str) -> str:
    """`text` with every URL password masked: for errors and log lines that name a URL
    (settings, broker and database addresses), which end up in log stores."""
    return _URL_PASSWORD.sub(r"\1***@", text)
