"""`rsms ingest`: serve the public API (`http_server.py`), and /metrics and /health/* on the ops port."""

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

from services.ingest.http_server import IngestServerConfig, ServerLimits, serve, server_config
from services.ingest.settings import IngestSettings
from shared.log import configure_logging, get_logger

# prometheus_client decides at import whether values live in per-process files, so this is
# set before anything imports it (hence a name here, not an import from metrics.py).
MULTIPROCESS_ENV = "PROMETHEUS_MULTIPROC_DIR"


def run() -> None:
    settings = IngestSettings()
    configure_logging("ingest", settings.log_level, settings.log_format)
    log = get_logger(__name__)
    metrics_dir = None
    if not os.environ.get(MULTIPROCESS_ENV):
        # The API is served from worker processes, one or more: each counts in its own files
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
    config = ingest_server_config(settings, "services.ingest.app:create_app")
    try:
        serve(config)
    finally:
        stop_ops()
        if metrics_dir:
            shutil.rmtree(metrics_dir, ignore_errors=True)


def ingest_server_config(settings: IngestSettings, app: str) -> IngestServerConfig:
    """The server `rsms ingest` runs for `app` (an import string of its factory), from the
    settings: the benchmarks' bare baseline is served by the same."""
    return server_config(
        app,
        settings.ingest_host,
        settings.ingest_port,
        settings.workers,
        ServerLimits(
            header_timeout=settings.ingest_header_timeout_seconds,
            max_header_bytes=settings.max_header_bytes,
            max_connections=settings.ingest_max_connections,
            # As many as the listen backlog holds: beyond it the kernel would drop them too.
            max_waiting=settings.ingest_max_connections,
        ),
        backlog=max(1024, min(settings.ingest_max_connections, 4096)),
    )


def _start_ops_server(settings: IngestSettings, metrics_dir: Path) -> Callable[[], None]:
    """/metrics of all workers and /health/* on the ops port, served by a thread of the main
    process (the workers serve only the API); returns what stops it."""
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
    thread = threading.Thread(target=loop.run_forever, name="ingest-ops", daemon=True)
    thread.start()

    def stop() -> None:
        # Stopped, joined and closed here: a loop left open is closed by the garbage
        # collector at interpreter exit, after its sockets are gone (a traceback per stop).
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=5)
        if not thread.is_alive():
            loop.run_until_complete(ops.stop())
            loop.close()

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
