"""`rsms`: one entry point; each group of subcommands lives in its own module."""

from __future__ import annotations

import sys

import click

from cli.accounts import accounts
from cli.blocklist import blocklist
from cli.dlq import dlq
from cli.ledger_dlq import ledger_dlq
from cli.migrate_topology import migrate_topology
from cli.optouts import optouts
from cli.provider_sim import provider_sim
from cli.receipts import receipts
from cli.send import send
from cli.services import serve_dispatcher, serve_ingest, serve_ledger
from cli.settings import settings
from cli.sql import sql
from cli.supervisor import stop_when_orphaned
from cli.up import up
from cli.usage import sms_status, usage
from cli.webhooks import webhooks
from shared.settings import InvalidSetting, warn_about_unknown_variables


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def rsms() -> None:
    """RSMS Gateway: send SMS through one REST API, every segment on record."""
    warn_about_unknown_variables()
    stop_when_orphaned()  # only in a service `rsms up` started


rsms.add_command(accounts)
rsms.add_command(blocklist)
rsms.add_command(serve_ingest)
rsms.add_command(serve_dispatcher)
rsms.add_command(serve_ledger)
rsms.add_command(dlq)
rsms.add_command(ledger_dlq)
rsms.add_command(optouts)
rsms.add_command(migrate_topology)
rsms.add_command(provider_sim)
rsms.add_command(receipts)
rsms.add_command(send)
rsms.add_command(up)
rsms.add_command(settings)
rsms.add_command(usage)
rsms.add_command(sms_status)
rsms.add_command(sql)
rsms.add_command(webhooks)


def main() -> None:
    """The `rsms` executable: a bad setting is one line per variable and exit code 2 (as
    click's usage errors), wherever in a command or service it is first read."""
    try:
        rsms()
    except InvalidSetting as error:
        for line in str(error).splitlines():
            click.echo(f"rsms: bad setting {line}", err=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
