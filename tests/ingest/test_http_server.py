"""The HTTP server adapter (`services/ingest/http_server.py`): the defences it adds to
uvicorn, on a real socket, and the uvicorn internals it relies on (these tests fail loudly
when an upgrade moves one)."""

from __future__ import annotations

import asyncio
import inspect
import json
import pickle
import socket
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest
import uvicorn
from uvicorn import _subprocess as uvicorn_subprocess
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState
from uvicorn.supervisors.multiprocess import Multiprocess

from services.ingest.http_server import GuardedHttpProtocol, ServerLimits, server_config

LIMITS = ServerLimits(header_timeout=0.5, max_header_bytes=1024, max_connections=100, max_waiting=100)
REQUEST = b"GET / HTTP/1.1\r\nHost: test\r\n\r\n"


def tiny_app() -> Callable[..., Any]:
    """An ASGI app answering every request with a small JSON (the factory uvicorn loads)."""

    async def app(scope: dict[str, Any], receive: Callable[..., Any], send: Callable[..., Any]) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        body = b'{"ok":true}'
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    return app


@asynccontextmanager
async def served(limits: ServerLimits = LIMITS) -> AsyncIterator[int]:
    """The adapter's server in this process on a free port (one worker: this loop)."""
    config = server_config(f"{__name__}:tiny_app", "127.0.0.1", 0, 1, limits, backlog=128)
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:  # noqa: ASYNC110 -- uvicorn offers no event for it
        await asyncio.sleep(0.01)
    try:
        yield server.servers[0].sockets[0].getsockname()[1]
    finally:
        server.should_exit = True
        await task


async def read_all(reader: asyncio.StreamReader, within: float = 5.0) -> bytes:
    """Everything until the server closes the connection."""
    return await asyncio.wait_for(reader.read(), within)


def status_and_json(answer: bytes) -> tuple[int, dict[str, Any], bytes]:
    head, _, body = answer.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(body), head.lower()


async def test_a_request_is_answered_with_a_date_and_no_server_header() -> None:
    async with served() as port:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(REQUEST.replace(b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n"))
        status, body, head = status_and_json(await read_all(reader))
        writer.close()
    assert (status, body) == (200, {"ok": True})
    assert b"\r\ndate: " in head and b"\r\nserver:" not in head


@pytest.mark.parametrize(
    "sent",
    [b"", b"GET / HTTP/1.1\r\nHost: te", b"GET / HTTP/1.1\r\nHost: test\r\n\r\nGET / HTTP/1.1\r\nX-Slow: a"],
    ids=["nothing", "half a head", "half the second head on a kept-alive connection"],
)
async def test_a_head_not_complete_within_the_timeout_closes_the_connection(sent: bytes) -> None:
    async with served() as port:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        started = time.monotonic()
        writer.write(sent)
        answer = await read_all(reader)  # the server closes: reading ends
        elapsed = time.monotonic() - started
        writer.close()
    # The first request of the kept-alive connection was answered; the trickled one never is.
    assert answer.count(b"HTTP/1.1 200") == (1 if sent.count(b"GET") == 2 else 0)
    assert elapsed >= LIMITS.header_timeout * 0.9


async def test_a_connection_that_keeps_sending_its_head_is_still_cut_at_the_deadline() -> None:
    async with served() as port:
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET / HTTP/1.1\r\n")
        started = time.monotonic()
        with pytest.raises((ConnectionError, OSError)):
            for index in range(100):
                writer.write(f"X-{index}: a\r\n".encode())
                await writer.drain()
                await asyncio.sleep(0.05)
        assert time.monotonic() - started < 3
        writer.close()


async def test_a_head_over_the_limit_gets_the_contracts_431_and_the_connection_closes() -> None:
    async with served() as port:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET / HTTP/1.1\r\nHost: test\r\nX-Big: " + b"a" * 5000)
        status, body, _ = status_and_json(await read_all(reader))
        writer.close()
    assert status == 431
    assert body == {
        "success": False,
        "error": {"code": "VALIDATION_ERROR", "message": "Request headers exceed the maximum size of 1 KB"},
    }


@pytest.mark.parametrize("sent", [b"GARBAGE\r\n\r\n", b"GET /\x80 HTTP/1.1\r\nHost: test\r\n\r\n"])
async def test_a_request_the_parser_refuses_gets_the_contracts_400(sent: bytes) -> None:
    async with served() as port:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(sent)
        status, body, _ = status_and_json(await read_all(reader))
        writer.close()
    assert status == 400
    assert body == {"success": False, "error": {"code": "VALIDATION_ERROR", "message": "Malformed HTTP request"}}


async def test_connections_over_the_cap_wait_unread_and_over_the_waiting_line_are_closed() -> None:
    limits = ServerLimits(header_timeout=30, max_header_bytes=1024, max_connections=1, max_waiting=1)
    async with served(limits) as port:
        _, holder = await asyncio.open_connection("127.0.0.1", port)  # served, idle
        await asyncio.sleep(0.1)
        waiting_reader, waiting = await asyncio.open_connection("127.0.0.1", port)
        waiting.write(REQUEST)
        await asyncio.sleep(0.1)
        refused_reader, refused = await asyncio.open_connection("127.0.0.1", port)
        # The line is full: closed at once, without an answer.
        assert await read_all(refused_reader, within=2) == b""
        # The waiting one is not read while the slot is held …
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(waiting_reader.read(1), 0.3)
        # … and served once it is free.
        holder.close()
        first = await asyncio.wait_for(waiting_reader.readuntil(b'{"ok":true}'), 5)
        assert first.startswith(b"HTTP/1.1 200")
        waiting.close()
        refused.close()


def test_the_uvicorn_internals_the_adapter_relies_on_are_where_it_expects() -> None:
    """What `GuardedHttpProtocol` and `ConnectionGuard` take from uvicorn beyond its public
    API. If this fails after an upgrade, re-read services/ingest/http_server.py against the
    new uvicorn before widening the pin in pyproject.toml."""
    # The hooks the protocol overrides, with the signatures it calls them by.
    expected = {
        "__init__": ["self", "config", "server_state", "app_state", "_loop"],
        "connection_made": ["self", "transport"],
        "connection_lost": ["self", "exc"],
        "data_received": ["self", "data"],
        "on_message_begin": ["self"],
        "on_headers_complete": ["self"],
        "send_400_response": ["self", "msg"],
    }
    for name, parameters in expected.items():
        assert list(inspect.signature(getattr(HttpToolsProtocol, name)).parameters) == parameters, name
    # Parser errors are answered by `send_400_response` (the contract's 400 depends on it).
    assert "self.send_400_response(" in inspect.getsource(HttpToolsProtocol.data_received)
    # Served connections are this set; a `ServerState` takes the guard as an attribute.
    state = ServerState()
    assert isinstance(state.connections, set)
    state._rsms_connection_guard = object()  # type: ignore[attr-defined]
    # The config reaches the spawned workers pickled, with its limits.
    config = server_config(f"{__name__}:tiny_app", "127.0.0.1", 0, 2, LIMITS, backlog=128)
    assert pickle.loads(pickle.dumps(config)).limits == LIMITS  # noqa: S301 -- our own bytes
    config.load()
    assert config.http_protocol_class is GuardedHttpProtocol
    assert list(inspect.signature(Multiprocess).parameters) == ["config", "sockets"]
    # A worker calls `configure_logging` before it serves (where the adapter sets its exit
    # on SIGTERM), and uvicorn raises the stopping signal again after its graceful stop.
    started = inspect.getsource(uvicorn_subprocess.subprocess_started)
    assert started.index("config.configure_logging()") < started.index("target(sockets=sockets)")
    assert "signal.raise_signal(" in inspect.getsource(uvicorn.Server.capture_signals)
    assert callable(config.bind_socket)


def test_a_port_another_server_holds_is_not_shared_the_bind_exits() -> None:
    """`serve` binds in the supervisor, without SO_REUSEPORT: a port another server holds
    fails at once instead of being shared."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        config = server_config(f"{__name__}:tiny_app", "127.0.0.1", taken.getsockname()[1], 1, LIMITS, backlog=128)
        with pytest.raises(SystemExit):
            config.bind_socket()
