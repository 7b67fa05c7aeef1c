"""`rsms dispatcher`: runs one dispatcher until SIGTERM/SIGINT.

On SIGTERM the consumer stops taking jobs, in-flight jobs finish (up to
RSMS_DISPATCHER_SHUTDOWN_GRACE_SECONDS) and are acknowledged, then it exits.
"""

from __future__ import annotations

import uvloop

from services.dispatcher.app import create_app
from services.dispatcher.settings import DispatcherSettings
from shared.gc_tuning import tune_gc
from shared.log import configure_logging, get_logger


def run(settings: DispatcherSettings | None = None) -> None:
    settings = settings or DispatcherSettings()
    configure_logging("dispatcher", settings.log_level, settings.log_format)
    log = get_logger(__name__)
    log.info(
        "dispatcher starting",
        prefetch=settings.dispatcher_prefetch,
        max_attempts=settings.dispatcher_max_attempts,
        http_port=settings.dispatcher_http_port,
    )
    app = create_app(settings)

    def tune_gc_once_started() -> None:
        # Full garbage collections stopped the dispatcher for 60-650 ms every second or two
        # under load: they walked the start-up heap each time (shared/gc_tuning.py). Once
        # started (connections open, lazy imports done), so what start-up made is frozen too.
        tune_gc(settings.gc_gen0_threshold, settings.gc_freeze)

    app.after_startup(tune_gc_once_started)
    # uvloop: every job is a handful of small socket writes (AMQP, Redis, HTTP), and
    # libuv's event loop does them for a fraction of asyncio's cost.
    uvloop.run(app.run())
    log.info("dispatcher stopped")
