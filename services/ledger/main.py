"""`rsms ledger`: run the ledger until SIGTERM or SIGINT, writing its last batch before exit."""

from __future__ import annotations

import uvloop

from services.ledger.app import build_app
from services.ledger.settings import LedgerSettings
from shared.log import configure_logging


def run() -> None:
    settings = LedgerSettings()
    configure_logging("ledger", settings.log_level, settings.log_format)
    # uvloop, as the dispatcher and ingest: thousands of small AMQP frames a second are
    # socket reads and writes, which libuv's loop does for a fraction of asyncio's cost.
    uvloop.run(build_app(settings).run())


if __name__ == "__main__":
    run()
