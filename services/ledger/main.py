"""`rsms ledger`: run the ledger until SIGTERM or SIGINT, writing its last batch before exit."""

from __future__ import annotations

import uvloop

from services.ledger.app import build_app
from services.ledger.settings import LedgerSettings
from shared.gc_tuning import tune_gc
from shared.log import configure_logging


def run() -> None:
    settings = LedgerSettings()
    configure_logging("ledger", settings.log_level, settings.log_format)
    app = build_app(settings)

    def tune_gc_once_started() -> None:
        # Full garbage collections walked the whole start-up heap (chDB's bindings, FastStream,
        # pydantic) and stopped the loop for up to 540 ms a time under load (shared/gc_tuning.py).
        # Once started (connections open, lazy imports done), so what start-up made is frozen too.
        tune_gc(settings.gc_gen0_threshold, settings.gc_freeze)

    app.after_startup(tune_gc_once_started)
    # uvloop, as the dispatcher and ingest: thousands of small AMQP frames a second are
    # socket reads and writes, which libuv's loop does for a fraction of asyncio's cost.
    uvloop.run(app.run())


if __name__ == "__main__":
    run()
