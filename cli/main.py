"""`rsms`: one entry point; each group of subcommands lives in its own module."""

from __future__ import annotations

import click

from cli.accounts import accounts
from cli.blocklist import blocklist
from cli.dlq import dlq
from cli.provider_sim import provider_sim
from cli.services import serve_dispatcher, serve_ingest, serve_ledger
from cli.settings import settings
from cli.up import up
from cli.usage import sms_status, usage


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def rsms() -> None:
    """RSMS Gateway: send SMS through one REST API, every segment on record."""


rsms.add_command(accounts)
rsms.add_command(blocklist)
rsms.add_command(serve_ingest)
rsms.add_command(serve_dispatcher)
rsms.add_command(serve_ledger)
rsms.add_command(dlq)
rsms.add_command(provider_sim)
rsms.add_command(up)
rsms.add_command(settings)
rsms.add_command(usage)
rsms.add_command(sms_status)

if __name__ == "__main__":
    rsms()
