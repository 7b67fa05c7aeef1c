"""`/metrics`, `/health/live` and `/health/ready` for the workers (dispatcher, ledger, the
ingest server's main process), the few POST routes a worker serves besides (the
dispatcher's provider receipt callback) and read-only pages (the ledger's status page).

A few lines of asyncio instead of a web framework: three GET routes for Prometheus and an
orchestrator's probes, answered from the same event loop the readiness check must look at
(broker connection, Redis, ClickHouse).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Awaitable, Callable, Mapping

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

ReadinessCheck = Callable[[], Awaitable[bool]]
PostHandler = Callable[[Mapping[str, str], bytes], Awaitable[tuple[int, bytes]]]
"""(lower-cased headers, body) → (status, JSON body)."""
PageHandler = Callable[[], Awaitable[tuple[str, bytes]]]
"""A GET route's (content type, body)."""
ReadinessDetails = Callable[[], Awaitable[dict[str, str]]]
"""Facts for an operator in the /health/ready answer that do not decide readiness."""

MAX_POST_BYTES = 1024 * 1024

_REASONS = {
    200: "OK",
    400: "Bad Request",
    401: "Unauthorized",
    404: "Not Found",
    405: "Method Not Allowed",
    413: "Content Too Large",
    503: "Service Unavailable",
}


class OpsServer:
    def __init__(
        self,
        host: str,
        port: int,
        registry: CollectorRegistry,
        ready: ReadinessCheck,
        posts: Mapping[str, PostHandler] | None = None,
        details: ReadinessDetails | None = None,
        pages: Mapping[str, PageHandler] | None = None,
    ) -> None:
        self._posts = dict(posts or {})
        self._pages = dict(pages or {})
        self._host = host
        self._port = port
        self._registry = registry
        self._ready = ready
        self._details = details
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, self._host, self._port)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request_line = await asyncio.wait_for(reader.readline(), 5)
            headers: dict[str, str] = {}
            while (line := await asyncio.wait_for(reader.readline(), 5)) not in (b"\r\n", b"\n", b""):
                name, _, value = line.decode("latin-1").partition(":")
                headers[name.strip().lower()] = value.strip()
            parts = request_line.decode("latin-1").split()
            if len(parts) >= 2 and parts[0] == "POST":
                status, content_type, body = await self._post(parts[1].split("?", 1)[0], headers, reader)
            else:
                status, content_type, body = await self._answer(parts)
            writer.write(
                f"HTTP/1.1 {status} {_REASONS[status]}\r\nContent-Type: {content_type}\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
                + body
            )
            await writer.drain()
        except (TimeoutError, ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    async def _post(
        self, path: str, headers: Mapping[str, str], reader: asyncio.StreamReader
    ) -> tuple[int, str, bytes]:
        handler = self._posts.get(path)
        if handler is None:
            return 405, "text/plain", b"only GET\n"
        try:
            length = int(headers.get("content-length", "0"))
        except ValueError:
            return 400, "text/plain", b"bad Content-Length\n"
        if length > MAX_POST_BYTES:
            return 413, "text/plain", b"body too large\n"
        body = await asyncio.wait_for(reader.readexactly(length), 10) if length > 0 else b""
        status, answer = await handler(headers, body)
        return status, "application/json", answer

    async def _answer(self, parts: list[str]) -> tuple[int, str, bytes]:
        if len(parts) < 2 or parts[0] != "GET":
            return 405, "text/plain", b"only GET\n"
        path = parts[1].split("?", 1)[0]
        if path == "/metrics":
            return 200, CONTENT_TYPE_LATEST, generate_latest(self._registry)
        if path == "/health/live":
            return 200, "application/json", b'{"status":"ok"}'
        if path == "/health/ready":
            ready = await self._ready()
            body: dict[str, object] = {"status": "ready" if ready else "not ready"}
            if self._details is not None:
                body["details"] = await self._details()
            return (200 if ready else 503), "application/json", json.dumps(body).encode()
        page = self._pages.get(path)
        if page is not None:
            content_type, content = await page()
            return 200, content_type, content
        return 404, "text/plain", b"not found\n"
