"""`rsms ingest`: serve the public API with Granian."""

from __future__ import annotations

import os
import shutil
import tempfile

from granian.constants import Interfaces, Loops
from granian.server import Server

from services.ingest.settings import IngestSettings
from shared.log import configure_logging, get_logger

# prometheus_client decides at import whether values live in per-process files, so this is
# set before anything imports it (hence a name here, not an import from metrics.py).
MULTIPROCESS_ENV = "PROMETHEUS_MULTIPROC_DIR"


def run() -> None:
    settings = IngestSettings()
    configure_logging("ingest", settings.log_level, settings.log_format)
    metrics_dir = None
    if settings.ingest_workers > 1 and not os.environ.get(MULTIPROCESS_ENV):
        # Each worker counts in its own process; the workers inherit this directory and
        # /metrics adds their files up, so a scrape sees the whole service, not one worker.
        metrics_dir = os.environ[MULTIPROCESS_ENV] = tempfile.mkdtemp(prefix="rsms-ingest-metrics-")
    get_logger(__name__).info(
        "ingest_starting", host=settings.ingest_host, port=settings.ingest_port, workers=settings.ingest_workers
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
    )
    try:
        server.serve()
    finally:
        if metrics_dir:
            shutil.rmtree(metrics_dir, ignore_errors=True)
