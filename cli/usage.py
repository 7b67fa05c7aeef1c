"""`rsms usage` and `rsms sms-status`: billing and delivery reads, asked of the running ledger.

The ledger owns its ClickHouse data, so these ask it over RabbitMQ (`shared.ledger_queries`)
exactly as the HTTP API does; they work while the ledger holds the embedded chDB.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import click

from cli.table import json_option, print_document, print_table, table_records
from shared.contracts import MessageStatusReport, UsageReport
from shared.errors import GatewayError
from shared.ledger_queries import LedgerQueries, format_timestamp, parse_usage_params
from shared.money import format_money
from shared.rabbitmq import cluster_broker
from shared.settings import ServiceSettings


def _today() -> str:
    return datetime.now(UTC).date().isoformat()


def _first_of_month() -> str:
    return datetime.now(UTC).date().replace(day=1).isoformat()


@click.command("usage")
@click.option(
    "--from",
    "date_from",
    default=_first_of_month,
    show_default="first of this month",
    help="First UTC day, YYYY-MM-DD.",
)
@click.option("--to", "date_to", default=_today, show_default="today", help="Last UTC day, included.")
@click.option("--group-by", type=click.Choice(["day", "tag", "country"]), default="day", show_default=True)
@click.option("--project", default=None, help="One project (default: every project).")
@click.option("--include-test", is_flag=True, help="Count sk_test_ traffic as well.")
@click.option("--timeout", type=float, default=10.0, show_default=True, help="Seconds to wait for the ledger.")
@json_option
def usage(
    date_from: str,
    date_to: str,
    group_by: str,
    project: str | None,
    include_test: bool,
    timeout: float,
    as_json: bool,
) -> None:
    """Billed usage (sent recipients, segments, cost) per project and day, tag or country."""
    try:
        params = parse_usage_params(date_from, date_to, group_by)
    except GatewayError as error:
        raise click.BadParameter("; ".join(error.details)) from None
    report = _ask(
        lambda q: q.usage(project, params.date_from, params.date_to, params.group_by, include_test=include_test),
        timeout,
    )
    assert isinstance(report, UsageReport)
    print_table(
        ["project", group_by, "messages", "recipients", "segments", "cost"],
        [
            [
                r.project,
                r.group,
                r.messages,
                r.recipients,
                r.segments,
                format_money(r.cost, r.currency),
            ]
            for r in report.rows
        ],
        empty=f"no billed usage from {params.date_from} to {params.date_to}",
        as_json=as_json,
    )


@click.command("sms-status")
@click.argument("project")
@click.argument("message_id", type=click.UUID)
@click.option("--timeout", type=float, default=10.0, show_default=True, help="Seconds to wait for the ledger.")
@json_option
def sms_status(project: str, message_id: UUID, timeout: float, as_json: bool) -> None:
    """Each recipient's delivery status of one message of PROJECT."""
    report = _ask(lambda q: q.message_status(project, message_id), timeout)
    assert isinstance(report, MessageStatusReport)
    if not report.found:
        raise click.ClickException(f"no message {message_id} in project {project}")
    headers = [
        "recipient",
        "country",
        "status",
        "attempt",
        "segments",
        "cost",
        "error",
        "updated",
        "delivery",
        "delivered",
    ]
    rows = [
        [
            r.recipient,
            r.country,
            r.status,
            r.attempt,
            r.segments,
            format_money(r.cost, None),
            r.error_code,
            format_timestamp(r.updated_at),
            f"{r.delivery_status} ({r.delivery_error})" if r.delivery_error else r.delivery_status,
            format_timestamp(r.delivery_updated_at),
        ]
        for r in report.recipients
    ]
    if as_json:
        print_document(
            {
                "message_id": report.message_id,
                "project": report.project,
                "tag": report.tag,
                "test": report.test,
                "accepted_at": format_timestamp(report.accepted_at),
                "billed": format_money(report.cost, report.currency),
                "recipients": table_records(headers, rows),
            }
        )
        return
    click.echo(
        f"message {report.message_id}  tag {report.tag or '-'}  "
        f"accepted {format_timestamp(report.accepted_at) or '-'}  "
        f"billed {format_money(report.cost, report.currency)}"
    )
    print_table(headers, rows)


def _ask(call: Any, timeout: float) -> MessageStatusReport | UsageReport:
    async def run() -> MessageStatusReport | UsageReport:
        async with cluster_broker(ServiceSettings().amqp_url, logger=None) as broker:
            result: MessageStatusReport | UsageReport = await call(LedgerQueries(broker, timeout))
            return result

    try:
        return asyncio.run(run())
    except GatewayError as error:
        raise click.ClickException(error.message) from None
