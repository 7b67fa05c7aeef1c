"""One SMPP bind over one TCP (or TLS) connection: window, rate, keep-alive, unbind.

The session owns the socket. `submit` waits for a window slot and the bind's rate, writes
the submit_sm and waits for its submit_sm_resp; a response that never comes (the
connection dropped, the response timer ran out) raises `OutcomeUnknown`, because the SMSC
may have taken the part. deliver_sm are handed to `on_deliver`, and the deliver_sm_resp
carries the status it returns, written only once it returned. enquire_link keeps an idle
bind alive and finds a dead one.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import ssl
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from services.dispatcher.smpp import pdu
from services.dispatcher.smpp.pdu import Command, Deliver
from services.dispatcher.smpp.status import ESME_ROK, status_name
from shared.log import get_logger

log = get_logger(__name__)

_MAX_PDU = 64 * 1024
_READ_SIZE = 256 * 1024
_HEADER_SIZE = pdu.HEADER.size


class BindRefused(Exception):
    def __init__(self, status: int) -> None:
        super().__init__(f"bind refused: {status_name(status)}")
        self.status = status


class NotSubmitted(Exception):
    """The part never left: the bind was down before it could be written. Safe to retry."""


class OutcomeUnknown(Exception):
    """The part was written but no answer came: the SMSC may or may not have taken it."""


@dataclass(frozen=True, slots=True)
class SessionConfig:
    host: str
    port: int
    system_id: str
    password: str
    system_type: str
    window: int
    submit_rate: float
    enquire_link_seconds: float
    response_timeout_seconds: float
    tls: ssl.SSLContext | None
    connect_timeout_seconds: float = 10.0


class Session:
    def __init__(
        self,
        config: SessionConfig,
        bind: Command,
        on_deliver: Callable[[Deliver], Awaitable[int]],
        name: str,
    ) -> None:
        self._config = config
        self._bind = bind
        self._on_deliver = on_deliver
        self.name = name
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._sequence = 0
        self._waiting: dict[int, asyncio.Future[tuple[int, str]]] = {}
        self._window = asyncio.Semaphore(config.window)
        self._outstanding = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self._next_submit_at = 0.0
        self._paused_until = 0.0
        self._rate_lock = asyncio.Lock()
        self._unwritten: list[bytes] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._last_heard = 0.0
        self._unbinding = False
        self.closed = asyncio.Event()

    @property
    def can_submit(self) -> bool:
        return self._bind in (Command.BIND_TRANSCEIVER, Command.BIND_TRANSMITTER)

    @property
    def is_open(self) -> bool:
        return self._writer is not None and not self.closed.is_set() and not self._unbinding

    @property
    def free_window(self) -> int:
        return self._config.window - self._outstanding

    async def open(self) -> None:
        """Connects and binds; raises `BindRefused` or `OSError`/`TimeoutError`."""
        cfg = self._config
        self._reader, writer = await asyncio.wait_for(
            asyncio.open_connection(cfg.host, cfg.port, ssl=cfg.tls, limit=_MAX_PDU),
            cfg.connect_timeout_seconds,
        )
        self._writer = writer
        self._last_heard = time.monotonic()
        sequence = self._next_sequence()
        writer.write(pdu.encode_bind(self._bind, sequence, cfg.system_id, cfg.password, cfg.system_type))
        try:
            header, _ = await asyncio.wait_for(self._read_frame(), cfg.response_timeout_seconds)
        except BaseException:
            self._abort()
            raise
        if header.command_id in (Command.GENERIC_NACK, self._bind | pdu.RESPONSE_BIT) and header.status != ESME_ROK:
            self._abort()
            raise BindRefused(header.status)
        if header.command_id != self._bind | pdu.RESPONSE_BIT:
            self._abort()
            raise OSError(f"unexpected answer to bind: command 0x{header.command_id:08X}")
        self._spawn(self._read_loop())
        self._spawn(self._keep_alive())

    async def submit(self, template: pdu.SubmitTemplate, destination: str) -> tuple[int, str]:
        """(command_status, message_id) of the submit_sm_resp."""
        async with self._window:
            if not self.is_open:
                raise NotSubmitted(f"{self.name} is not bound")
            # Without a rate or a pause there is nothing to wait for: no lock to take.
            if self._config.submit_rate > 0 or self._rate_lock.locked() or time.monotonic() < self._paused_until:
                await self._pace()
                if not self.is_open:
                    raise NotSubmitted(f"{self.name} is not bound")
            sequence = self._next_sequence()
            frame = template.frame(sequence, destination)
            loop = asyncio.get_running_loop()
            answer: asyncio.Future[tuple[int, str]] = loop.create_future()
            self._waiting[sequence] = answer
            self._outstanding += 1
            self._idle.clear()
            # One timer a submit rather than `asyncio.wait_for` (a second future and its
            # callbacks a submit): it fails the answer, as a lost bind does.
            timer = loop.call_later(self._config.response_timeout_seconds, self._expire, sequence)
            try:
                self._write_soon(frame)
                return await answer
            finally:
                timer.cancel()
                self._waiting.pop(sequence, None)
                self._outstanding -= 1
                if not self._outstanding:
                    self._idle.set()

    async def submit_many(
        self, submits: Sequence[tuple[pdu.SubmitTemplate, str]]
    ) -> list[tuple[int, str] | NotSubmitted | OutcomeUnknown]:
        """`submit` each (part, destination), in order, without a task or a wait of its own each:
        each takes a window slot (waiting while the window is full), and gives it back when
        its answer comes (or the timer or a lost bind fails it). Answers in order: the
        (command_status, message_id), or `NotSubmitted` for a destination whose submit_sm
        was never written (the bind went down first), or `OutcomeUnknown`."""
        loop = asyncio.get_running_loop()
        timeout = self._config.response_timeout_seconds
        answers: list[asyncio.Future[tuple[int, str]] | NotSubmitted] = []
        for template, destination in submits:
            await self._window.acquire()
            if self.is_open and (
                self._config.submit_rate > 0 or self._rate_lock.locked() or time.monotonic() < self._paused_until
            ):
                try:
                    await self._pace()
                except BaseException:  # cancelled while paced: the slot was never used
                    self._window.release()
                    raise
            if not self.is_open:
                self._window.release()
                answers.append(NotSubmitted(f"{self.name} is not bound"))
                continue
            sequence = self._next_sequence()
            try:
                frame = template.frame(sequence, destination)
            except BaseException:
                self._window.release()
                raise
            answer: asyncio.Future[tuple[int, str]] = loop.create_future()
            self._waiting[sequence] = answer
            self._outstanding += 1
            self._idle.clear()
            timer = loop.call_later(timeout, self._expire, sequence)
            answer.add_done_callback(functools.partial(self._answered, sequence, timer))
            self._write_soon(frame)
            answers.append(answer)
        results: list[tuple[int, str] | NotSubmitted | OutcomeUnknown] = []
        for pending in answers:
            if isinstance(pending, NotSubmitted):
                results.append(pending)
                continue
            try:
                results.append(await pending)
            except OutcomeUnknown as exc:
                results.append(exc)
        return results

    def _answered(self, sequence: int, timer: asyncio.TimerHandle, answer: asyncio.Future[tuple[int, str]]) -> None:
        """A `submit_many` answer came (or failed): its slot is free again."""
        timer.cancel()
        self._waiting.pop(sequence, None)
        self._outstanding -= 1
        if not self._outstanding:
            self._idle.set()
        self._window.release()

    def _expire(self, sequence: int) -> None:
        answer = self._waiting.get(sequence)
        if answer is not None and not answer.done():
            answer.set_exception(OutcomeUnknown(f"no submit_sm_resp within {self._config.response_timeout_seconds}s"))

    def _write_soon(self, frame: bytes) -> None:
        """The submit_sm written in one loop turn leave together, in one write (a system
        call each was much of the CPU per recipient). A frame still here when the bind is
        lost fails with the others outstanding (`OutcomeUnknown`): never resent."""
        self._unwritten.append(frame)
        if len(self._unwritten) == 1:
            asyncio.get_running_loop().call_soon(self._write_unwritten)

    def _write_unwritten(self) -> None:
        frames, self._unwritten = self._unwritten, []
        if frames and self._writer is not None and not self.closed.is_set():
            self._writer.write(b"".join(frames))

    def pause(self, seconds: float) -> None:
        """Throttled: no submit on this bind for `seconds`."""
        self._paused_until = max(self._paused_until, time.monotonic() + seconds)

    async def unbind(self, grace_seconds: float) -> None:
        """Lets outstanding submits be answered (up to `grace_seconds`), then unbinds and closes."""
        if self._writer is None or self.closed.is_set():
            return
        self._unbinding = True
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._idle.wait(), grace_seconds)
        if not self.closed.is_set():
            sequence = self._next_sequence()
            answer = asyncio.get_running_loop().create_future()
            self._waiting[sequence] = answer
            with contextlib.suppress(Exception):
                self._writer.write(pdu.encode_empty(Command.UNBIND, sequence))
                await asyncio.wait_for(answer, min(self._config.response_timeout_seconds, 5.0))
        await self.close()

    async def close(self) -> None:
        self._abort()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    def _abort(self) -> None:
        if self._writer is not None:
            self._writer.close()
        for answer in self._waiting.values():
            if not answer.done():
                answer.set_exception(OutcomeUnknown("the bind was lost before the answer came"))
        self._waiting.clear()
        self._unwritten.clear()
        self.closed.set()

    def _next_sequence(self) -> int:
        self._sequence = self._sequence % 0x7FFFFFFF + 1
        return self._sequence

    async def _pace(self) -> None:
        async with self._rate_lock:
            now = time.monotonic()
            start = max(now, self._next_submit_at, self._paused_until)
            if start > now:
                await asyncio.sleep(start - now)
            if self._config.submit_rate > 0:
                self._next_submit_at = start + 1.0 / self._config.submit_rate

    def _spawn(self, coro: Awaitable[None]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _read_frame(self) -> tuple[pdu.Header, bytes]:
        assert self._reader is not None
        head = await self._reader.readexactly(pdu.HEADER.size)
        header = pdu.parse_header(head)
        if not pdu.HEADER.size <= header.length <= _MAX_PDU:
            raise OSError(f"PDU length {header.length} out of range")
        body = await self._reader.readexactly(header.length - pdu.HEADER.size)
        self._last_heard = time.monotonic()
        return header, head + body

    async def _read_loop(self) -> None:
        assert self._reader is not None
        reader = self._reader
        rest = b""
        try:
            while True:
                # Whatever has arrived, many PDUs at a time: a window's worth of answers
                # costs one read, not two awaits each.
                chunk = await reader.read(_READ_SIZE)
                if not chunk:
                    raise asyncio.IncompleteReadError(rest, None)
                self._last_heard = time.monotonic()
                rest = self._on_data(rest + chunk if rest else chunk)
        except (OSError, asyncio.IncompleteReadError) as exc:
            if not self._unbinding:
                log.warning("smpp bind lost", bind=self.name, error=type(exc).__name__)
        finally:
            self._abort()

    def _on_data(self, data: bytes) -> bytes:
        """Handles every whole PDU in `data`; answers the bytes of the incomplete last one."""
        at = 0
        end = len(data)
        waiting = self._waiting
        while end - at >= _HEADER_SIZE:
            length, command, status, sequence = pdu.HEADER.unpack_from(data, at)
            if not _HEADER_SIZE <= length <= _MAX_PDU:
                raise OSError(f"PDU length {length} out of range")
            if end - at < length:
                break
            if command == Command.SUBMIT_SM_RESP:
                # The common answer, read in place: its message_id is the body's C-string.
                answer = waiting.get(sequence)
                if answer is not None and not answer.done():
                    message_id = ""
                    if status == ESME_ROK:
                        stop = data.find(b"\0", at + _HEADER_SIZE, at + length)
                        message_id = data[at + _HEADER_SIZE : stop if stop >= 0 else at + length].decode(
                            "ascii", errors="replace"
                        )
                    answer.set_result((status, message_id))
            else:
                self._on_frame(pdu.Header(length, command, status, sequence), data[at : at + length])
            at += length
        return data[at:]

    def _on_frame(self, header: pdu.Header, frame: bytes) -> None:
        assert self._writer is not None
        command = header.command_id
        if command & pdu.RESPONSE_BIT:
            answer = self._waiting.get(header.sequence)
            if answer is not None and not answer.done():
                answer.set_result((header.status, ""))
        elif command == Command.DELIVER_SM:
            self._spawn(self._deliver(header.sequence, frame))
        elif command == Command.ENQUIRE_LINK:
            self._writer.write(pdu.encode_empty(Command.ENQUIRE_LINK_RESP, header.sequence))
        elif command == Command.UNBIND:
            self._writer.write(pdu.encode_empty(Command.UNBIND_RESP, header.sequence))
            raise OSError("the SMSC unbound")
        else:
            self._writer.write(pdu.encode_empty(Command.GENERIC_NACK, header.sequence, 0x03))  # ESME_RINVCMDID

    async def _deliver(self, sequence: int, frame: bytes) -> None:
        try:
            deliver = pdu.decode_deliver_sm(frame)
        except Exception as exc:
            log.warning("unreadable deliver_sm answered with generic_nack", bind=self.name, error=str(exc))
            if self._writer is not None and not self.closed.is_set():
                self._writer.write(pdu.encode_empty(Command.GENERIC_NACK, sequence, 0x02))  # ESME_RINVCMDLEN
            return
        status = await self._on_deliver(deliver)
        if self._writer is not None and not self.closed.is_set():
            self._writer.write(pdu.encode_deliver_sm_resp(sequence, status))

    async def _keep_alive(self) -> None:
        interval = self._config.enquire_link_seconds
        while not self.closed.is_set():
            await asyncio.sleep(interval)
            if time.monotonic() - self._last_heard < interval or self._writer is None:
                continue
            sequence = self._next_sequence()
            answer = asyncio.get_running_loop().create_future()
            self._waiting[sequence] = answer
            try:
                self._writer.write(pdu.encode_empty(Command.ENQUIRE_LINK, sequence))
                await asyncio.wait_for(answer, self._config.response_timeout_seconds)
            except (TimeoutError, OutcomeUnknown):
                log.warning("smpp bind silent: no enquire_link_resp, reconnecting", bind=self.name)
                self._abort()
                return
            finally:
                self._waiting.pop(sequence, None)
