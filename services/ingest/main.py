"""`rsms ingest`: serve the public API with Granian."""

from __future__ import annotations

import os
import resource
import shutil
import tempfile

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
    if settings.ingest_workers > 1 and not os.environ.get(MULTIPROCESS_ENV):
        # Each worker counts in its own process; the workers inherit this directory and
        # /metrics adds their files up, so a scrape sees the whole service, not one worker.
        metrics_dir = os.environ[MULTIPROCESS_ENV] = tempfile.mkdtemp(prefix="rsms-ingest-metrics-")
    open_files = _raise_open_files_limit()
    log.info(
        "ingest_starting",
        host=settings.ingest_host,
        port=settings.ingest_port,
        workers=settings.ingest_workers,
        max_connections_per_worker=settings.ingest_max_connections,
        open_files_limit=open_files,
    )
    server = Server(
        "services.ingest.app:create_app",
        address=settings.ingest_host,
        port=settings.ingest_port,
        interface=Interfaces.ASGI,
        workers=settings.ingest_workers,
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
        if metrics_dir:
            shutil.rmtree(metrics_dir, ignore_errors=True)


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
