"""`rsms ingest|dispatcher|ledger`: run one service in the foreground (`rsms webhooks` and
`rsms provider-sim` run theirs too, beside their operator subcommands)."""

from __future__ import annotations

import click


@click.command("ingest")
def serve_ingest() -> None:
    """Run the public HTTP API (settings: RSMS_INGEST_*)."""
    from services.ingest.main import run

    run()


@click.command("dispatcher")
def serve_dispatcher() -> None:
    """Run a dispatcher: consumes jobs and sends them through the provider."""
    from services.dispatcher.main import run

    run()


@click.command("ledger")
def serve_ledger() -> None:
    """Run the ledger: writes accepted requests and outcomes to ClickHouse."""
    from services.ledger.main import run

    run()
