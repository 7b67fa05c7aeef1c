"""`rsms ingest`: serve the public API with Granian."""

from __future__ import annotations

from granian.constants import Interfaces, Loops
from granian.server import Server

from services.ingest.settings import IngestSettings
from shared.log import configure_logging, get_logger


def run() -> None:
    settings = IngestSettings()
    configure_logging("ingest", settings.log_level, settings.log_format)
    get_logger(__name__).info(
        "ingest_starting", host=settings.ingest_host, port=settings.ingest_port, workers=settings.ingest_workers
    )
    Server(
        "services.ingest.app:create_app",
        address=settings.ingest_host,
        port=settings.ingest_port,
        interface=Interfaces.ASGI,
        workers=settings.ingest_workers,
        loop=Loops.auto,
        factory=True,
        log_access=False,
    ).serve()
