"""The API's HTTP server: uvicorn (httptools, uvloop) in worker processes, with the
defences a public endpoint needs that uvicorn leaves out.

Why uvicorn and not Granian: in the whole pipeline on 2 cores, the same app under uvicorn
took single-recipient sends from ~3,100–3,700 to ~4,150–4,200 a second, and every service
spent less a message (bench/README.md, rounds 11 and 12). An asyncio server reads the
requests that arrive together in one loop turn, so ingest's Redis pipelines and publish
groups grow, and with them the dispatcher's and the ledger's batches.

What Granian gave and uvicorn does not, added here (`GuardedHttpProtocol`):
- a deadline for a request's head: a connection that sends nothing, or trickles its
  request line and headers, is closed `header_timeout` seconds after it opened (or after
  its previous answer); uvicorn holds it for ever.
- a cap on a request's head in bytes: httptools buffers a header line of any length.
- a cap on the connections a worker serves at once: beyond it a new connection waits,
  unread, until one closes (uvicorn's `limit_concurrency` answers a plain-text 503 instead,
  outside the error catalogue); beyond a waiting line as long as the listen backlog it is
  closed, as a full backlog would drop it.
- the contract's error shape for a request the parser refuses, instead of plain text.

Workers run under uvicorn's multiprocess supervisor even when there is one, so a worker
that dies is replaced (half a second later) without the service exiting.

Everything here that reaches under uvicorn's public API (the protocol's hooks and state,
`ServerState.connections`, the supervisor, `configure_logging` as a worker's first call) is
checked by tests/ingest/test_http_server.py, which fails loudly if an upgrade moves it.
"""

from __future__ import annotations

import asyncio
import math
import multiprocessing
from dataclasses import dataclass
from typing import Any, cast

import msgspec
from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState
from uvicorn.supervisors.multiprocess import Multiprocess

from services.ingest.http_limits import headers_too_large
from shared.errors import ErrorCode, GatewayError
from shared.log import exit_normally_on_stop_signals

SWEEP_SECONDS = 0.25
"""How often a worker closes the connections past their head deadline: a head gets at most
this much longer than its limit (one timer a worker, not one a request)."""
GRACEFUL_SHUTDOWN_SECONDS = 5
"""On SIGTERM, requests in flight get this long to finish; the rest of the stop period is
the app's shutdown (closing Redis and the broker)."""

_encode = msgspec.json.Encoder().encode


@dataclass(frozen=True, slots=True)
class ServerLimits:
    header_timeout: float
    """Seconds a connection has to deliver a request's head (and an idle keep-alive
    connection has before it is closed)."""
    max_header_bytes: int
    """The app's limit on header names and values: the server refuses a head over twice
    this (request line and framing included) before it is buffered further."""
    max_connections: int
    """Connections a worker serves at once."""
    max_waiting: int
    """Connections a worker keeps waiting, unread, beyond `max_connections`."""


class IngestServerConfig(Config):
    """uvicorn's `Config` that also carries the limits to the worker processes (it is what
    the supervisor pickles for each one)."""

    limits: ServerLimits

    def configure_logging(self) -> None:
        """uvicorn calls this first thing in each worker process, before serving: the one
        place to prepare the worker. After a graceful stop, uvicorn raises the stopping
        signal again; a spawned worker would die of it with the default handler, past
        `atexit`, and the log lines still waiting to be written would be lost. Here the
        signal ends the worker as a normal exit."""
        super().configure_logging()
        if multiprocessing.parent_process() is not None:
            exit_normally_on_stop_signals()


def server_config(
    app: str, host: str, port: int, workers: int, limits: ServerLimits, *, backlog: int
) -> IngestServerConfig:
    config = IngestServerConfig(
        app,
        factory=True,
        host=host,
        port=port,
        workers=workers,
        http=GuardedHttpProtocol,
        loop="uvloop",
        ws="none",
        lifespan="on",
        interface="asgi3",
        # Logging is ours (structured lines, set up by the app in each worker); no access
        # log (it would carry paths and addresses for every request).
        log_config=None,
        access_log=False,
        # uvicorn's warnings are about clients (a malformed request, an upgrade it does not
        # speak): one line each would let any client fill the log. Its errors stay.
        log_level="error",
        # The app decides whom to believe about the client's address (`client_ip.py`,
        # RSMS_TRUSTED_PROXIES): uvicorn must not rewrite it from X-Forwarded-For first.
        proxy_headers=False,
        server_header=False,
        backlog=backlog,
        timeout_keep_alive=max(1, math.ceil(limits.header_timeout)),
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS,
    )
    config.limits = limits
    return config


def serve(config: IngestServerConfig) -> None:
    """Bind the port here, then serve it from `config.workers` worker processes, replacing
    any that dies, until SIGINT or SIGTERM. Exits when the port cannot be bound."""
    socket = config.bind_socket()
    Multiprocess(config, sockets=[socket]).run()


_MALFORMED = GatewayError(ErrorCode.VALIDATION_ERROR, "Malformed HTTP request")


class GuardedHttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a head deadline, a head size cap, a connection
    cap and the contract's errors (module docstring)."""

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        limits = cast(IngestServerConfig, config).limits
        self._guard = ConnectionGuard.of(server_state, limits, self.loop)
        self._head_limit = 2 * limits.max_header_bytes
        self.head_deadline: float | None = None
        """When the head being received must be complete; None while no head is."""
        self._head_bytes = 0
        self._admitted = False

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        if self._guard.admit(self, transport):
            self.start_serving(transport)

    def start_serving(self, transport: asyncio.Transport) -> None:
        """The connection's turn: from now on it is served (and its head timed)."""
        self._admitted = True
        super().connection_made(transport)
        self.head_deadline = self.loop.time() + self._guard.limits.header_timeout

    def connection_lost(self, exc: Exception | None) -> None:
        if not self._admitted:
            self._guard.forget(self)
            return
        super().connection_lost(exc)
        self._guard.released()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self.head_deadline is not None and not self.transport.is_closing():
            # Everything fed since the head began is head while it is incomplete (the one
            # read it began in is counted whole: a bound, not a measure).
            self._head_bytes += len(data)
            if self._head_bytes > self._head_limit:
                self.head_deadline = None
                self._refuse(headers_too_large(self._guard.limits.max_header_bytes))

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._head_bytes = 0
        if self.head_deadline is None:
            self.head_deadline = self.loop.time() + self._guard.limits.header_timeout

    def on_headers_complete(self) -> None:
        self.head_deadline = None
        super().on_headers_complete()

    def send_400_response(self, msg: str) -> None:
        self._refuse(_MALFORMED)

    def head_overdue(self) -> None:
        """The head deadline passed: close without an answer (there is no request to answer)."""
        self.head_deadline = None
        self.transport.close()

    def _refuse(self, error: GatewayError) -> None:
        """Answer `error` in the contract's shape and close: the stream cannot be trusted."""
        body = _encode(error.body())
        head = [
            f"HTTP/1.1 {error.http_status} {_REASONS.get(error.http_status, 'Error')}".encode(),
            *(name + b": " + value for name, value in self.server_state.default_headers),
            b"content-type: application/json",
            b"content-length: " + str(len(body)).encode(),
            b"connection: close",
        ]
        self.transport.write(b"\r\n".join(head) + b"\r\n\r\n" + body)
        self.transport.close()


_REASONS = {400: "Bad Request", 431: "Request Header Fields Too Large"}


class ConnectionGuard:
    """A worker's connections: the cap with its waiting line, and the sweep that closes
    heads past their deadline. One for each uvicorn server (its `ServerState`)."""

    def __init__(self, state: ServerState, limits: ServerLimits, loop: asyncio.AbstractEventLoop) -> None:
        self.limits = limits
        self._connections = cast("set[GuardedHttpProtocol]", state.connections)
        self._waiting: dict[GuardedHttpProtocol, asyncio.Transport] = {}
        self._loop = loop
        self._sweep_timer: asyncio.TimerHandle | None = None

    @classmethod
    def of(cls, state: ServerState, limits: ServerLimits, loop: asyncio.AbstractEventLoop) -> ConnectionGuard:
        guard: ConnectionGuard | None = getattr(state, "_rsms_connection_guard", None)
        if guard is None:
            guard = cls(state, limits, loop)
            state._rsms_connection_guard = guard  # type: ignore[attr-defined]
        return guard

    def admit(self, protocol: GuardedHttpProtocol, transport: asyncio.Transport) -> bool:
        """Whether `protocol` may be served now; if not, it waits unread (or, with the line
        full, is closed)."""
        self._keep_sweeping()
        if len(self._connections) < self.limits.max_connections and not self._waiting:
            return True
        transport.pause_reading()
        if len(self._waiting) >= self.limits.max_waiting:
            transport.abort()
        else:
            self._waiting[protocol] = transport
        return False

    def forget(self, protocol: GuardedHttpProtocol) -> None:
        """A waiting connection closed before its turn."""
        self._waiting.pop(protocol, None)

    def released(self) -> None:
        """A served connection closed: the longest waiting takes its place."""
        while self._waiting and len(self._connections) < self.limits.max_connections:
            protocol = next(iter(self._waiting))
            transport = self._waiting.pop(protocol)
            if transport.is_closing():
                continue
            protocol.start_serving(transport)
            transport.resume_reading()

    def _keep_sweeping(self) -> None:
        if self._sweep_timer is None:
            self._sweep_timer = self._loop.call_later(SWEEP_SECONDS, self._sweep)

    def _sweep(self) -> None:
        self._sweep_timer = None
        now = self._loop.time()
        for protocol in [p for p in self._connections if p.head_deadline is not None and p.head_deadline <= now]:
            protocol.head_overdue()
        if self._connections or self._waiting:
            self._keep_sweeping()
