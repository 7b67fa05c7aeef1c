"""`rsms ingest`: serve the public API with Granian, and /metrics and /health/* on the ops port."""

from __future__ import annotations

import asyncio
import os
import resource
import shutil
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path

import httpx
from granian.constants import HTTPModes, Interfaces, Loops
from granian.http import HTTP1Settings
from granian.server import Server

from services.ingest.settings import IngestSettings
from shared.log import configure_logging, get_logger

# prometheus_client decides at import whether values live in per-process files, so this is
# set before anything imports it (hence a name here, not an import from metrics.py).
MULTIPROCESS_ENV = "PROMETHEUS_MULTIPROC_DIR"
# Seconds between respawns of a worker that died; Granian gives up (and the process exits,
# for `rsms up` or the orchestrator to restart) when one dies again within 5.5 s.
RESPAWN_INTERVAL_SECONDS = 1.0


def run() -> None:
    settings = IngestSettings()
    configure_logging("ingest", settings.log_level, settings.log_format)
    log = get_logger(__name__)
    metrics_dir = None
    if not os.environ.get(MULTIPROCESS_ENV):
        # Granian serves from worker processes, one or more: each counts in its own files
        # under this directory (the workers inherit it), and the ops server here adds them
        # up, so a scrape sees the whole service, not one worker.
        metrics_dir = os.environ[MULTIPROCESS_ENV] = tempfile.mkdtemp(prefix="rsms-ingest-metrics-")
    # Bound before any worker starts: a taken ops port stops the service at once.
    stop_ops = _start_ops_server(settings, Path(os.environ[MULTIPROCESS_ENV]))
    open_files = _raise_open_files_limit()
    log.info(
        "ingest_starting",
        host=settings.ingest_host,
        port=settings.ingest_port,
        ops_port=settings.ingest_ops_port,
        workers=settings.workers,
        max_connections_per_worker=settings.ingest_max_connections,
        open_files_limit=open_files,
    )
    server = Server(
        "services.ingest.app:create_app",
        address=settings.ingest_host,
        port=settings.ingest_port,
        interface=Interfaces.ASGI,
        workers=settings.workers,
        loop=Loops.auto,
        factory=True,
        log_access=False,
        # HTTP/1.1 only: the header timeout below bounds HTTP/1 alone, and HTTP/2 streams
        # would open a second way to hold a worker slowly. A TLS proxy in front can speak
        # HTTP/2 to clients.
        http=HTTPModes.http1,
        http1_settings=HTTP1Settings(header_read_timeout=round(settings.ingest_header_timeout_seconds * 1000)),
        # Connections a worker holds at once (Granian's permits are per connection, idle
        # keep-alive ones included): the default, backlog/workers (512), let 1,100 slow
        # clients hold every one. New connections wait in the listen backlog beyond it.
        backpressure=settings.ingest_max_connections,
        backlog=max(1024, min(settings.ingest_max_connections, 4096)),
        respawn_failed_workers=True,
        respawn_interval=RESPAWN_INTERVAL_SECONDS,
    )
    try:
        server.serve()
    finally:
        stop_ops()
        if metrics_dir:
            shutil.rmtree(metrics_dir, ignore_errors=True)


def _start_ops_server(settings: IngestSettings, metrics_dir: Path) -> Callable[[], None]:
    """/metrics of all workers and /health/* on the ops port, served by a thread of the main
    process (Granian's workers serve only the API); returns what stops it."""
    # Imported only now: prometheus_client reads MULTIPROCESS_ENV when first imported.
    from services.ingest.metrics import all_workers_registry
    from shared.ops_server import OpsServer

    api_ready_url = f"http://{_local_address(settings.ingest_host)}:{settings.ingest_port}/health/ready"

    async def api_ready() -> bool:
        # Ready when the workers are: they hold the Redis and RabbitMQ connections.
        try:
            async with httpx.AsyncClient(timeout=2.0) as client:
                return (await client.get(api_ready_url)).status_code == 200
        except httpx.HTTPError:
            return False

    ops = OpsServer(settings.ingest_ops_host, settings.ingest_ops_port, all_workers_registry(metrics_dir), api_ready)
    loop = asyncio.new_event_loop()
    loop.run_until_complete(ops.start())
    threading.Thread(target=loop.run_forever, name="ingest-ops", daemon=True).start()

    def stop() -> None:
        loop.call_soon_threadsafe(loop.stop)

    return stop


def _local_address(host: str) -> str:
    """Where this machine reaches a server listening on `host` (any address: loopback)."""
    return {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)  # noqa: S104


def _raise_open_files_limit() -> int:
    """Every connection is a file descriptor; many systems start processes at a soft limit
    of 1,024, below what a worker is allowed to hold. Raised to the hard limit (the workers
    inherit it)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 65_536)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    return soft
