"""`rsms ledger`: run the ledger until SIGTERM or SIGINT, writing its last batch before exit."""

from __future__ import annotations

import asyncio

from services.ledger.app import build_app
from services.ledger.settings import LedgerSettings
from shared.log import configure_logging


def run() -> None:
    settings = LedgerSettings()
    configure_logging("ledger", settings.log_level, settings.log_format)
    asyncio.run(build_app(settings).run())


if __name__ == "__main__":
    run()
