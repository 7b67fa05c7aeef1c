"""`rsms sql "SELECT …"`: an analyst's read-only query of the running ledger.

Embedded chDB lets only the ledger process open its data directory, so this asks the
ledger over RabbitMQ (`shared.ledger_queries`), like `rsms usage`. SELECT only: anything
else is refused here before it is sent, and the ledger runs the statement read-only with
a row limit and a time limit (`services/ledger/sql_passthrough.py`).
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import click

from cli.table import json_option, print_document, print_table
from shared.contracts import SqlResult
from shared.errors import GatewayError
from shared.ledger_queries import LedgerQueries
from shared.rabbitmq import cluster_broker
from shared.read_only_sql import NotASelect, select_statement
from shared.settings import ServiceSettings

SQL_FAILED_EXIT_CODE = 1


@click.command("sql")
@click.argument("statement")
@click.option("--limit", type=click.IntRange(1), default=1000, show_default=True, help="Rows shown at most.")
@click.option(
    "--max-seconds", type=click.FloatRange(min=0.1), default=30.0, show_default=True, help="Time limit of the query."
)
@json_option
def sql(statement: str, limit: int, max_seconds: float, as_json: bool) -> None:
    """Run one SELECT on the ledger (read-only), e.g.

    rsms sql "SELECT project, count() FROM rsms.sms_requests GROUP BY project"

    The tables and ready-made queries are in services/ledger/QUERIES.md. The ledger caps
    the limits too (RSMS_LEDGER_SQL_MAX_ROWS, RSMS_LEDGER_SQL_MAX_SECONDS).
    """
    try:
        checked = select_statement(statement)
    except NotASelect as error:
        raise click.UsageError(str(error)) from None
    result = _ask(checked, limit, max_seconds)
    if result.error is not None:
        click.echo(f"rsms sql: {result.error}", err=True)
        raise SystemExit(SQL_FAILED_EXIT_CODE)
    if as_json:
        print_document(
            {
                "columns": result.columns,
                "types": result.types,
                "rows": [dict(zip(result.columns, row, strict=True)) for row in result.rows],
                "truncated": result.truncated,
            }
        )
        return
    print_table(result.columns, [[_shown(value) for value in row] for row in result.rows], empty="(no rows)")
    if result.truncated:
        click.echo(f"(first {len(result.rows)} rows shown: more matched; raise --limit or narrow the query)", err=True)


def _shown(value: Any) -> Any:
    """Numbers as ClickHouse gave them (a rate of 0.0123 is not 0.01), nested values as JSON."""
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, list | dict):
        return json.dumps(value, ensure_ascii=False)
    return value


def _ask(statement: str, limit: int, max_seconds: float) -> SqlResult:
    async def run() -> SqlResult:
        async with cluster_broker(ServiceSettings().amqp_url, logger=None) as broker:
            return await LedgerQueries(broker).sql(statement, max_rows=limit, max_seconds=max_seconds)

    try:
        return asyncio.run(run())
    except GatewayError as error:
        raise click.ClickException(error.message) from None
