"""`/metrics`, `/health/live` and `/health/ready` for the workers (dispatcher, ledger).

A few lines of asyncio instead of a web framework: three GET routes for Prometheus and an
orchestrator's probes, answered from the same event loop the readiness check must look at
(broker connection, Redis, ClickHouse). The ingest service serves the same routes through
its Litestar app.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

ReadinessCheck = Callable[[], Awaitable[bool]]

_REASONS = {200: "OK", 404: "Not Found", 405: "Method Not Allowed", 503: "Service Unavailable"}


class OpsServer:
    def __init__(self, host: str, port: int, registry: CollectorRegistry, ready: ReadinessCheck) -> None:
        self._host = host
        self._port = port
        self._registry = registry
        self._ready = ready
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
            while (await asyncio.wait_for(reader.readline(), 5)) not in (b"\r\n", b"\n", b""):
                pass
            status, content_type, body = await self._answer(request_line.decode("latin-1").split())
            writer.write(
                f"HTTP/1.1 {status} {_REASONS[status]}\r\nContent-Type: {content_type}\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
                + body
            )
            await writer.drain()
        except (TimeoutError, ConnectionError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    async def _answer(self, parts: list[str]) -> tuple[int, str, bytes]:
        if len(parts) < 2 or parts[0] != "GET":
            return 405, "text/plain", b"only GET\n"
        path = parts[1].split("?", 1)[0]
        if path == "/metrics":
            return 200, CONTENT_TYPE_LATEST, generate_latest(self._registry)
        if path == "/health/live":
            return 200, "application/json", b'{"status":"ok"}'
        if path == "/health/ready":
            if await self._ready():
                return 200, "application/json", b'{"status":"ready"}'
            return 503, "application/json", b'{"status":"not ready"}'
        return 404, "text/plain", b"not found\n"
