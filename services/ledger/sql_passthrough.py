"""The analysts' SQL passthrough (`rsms sql`): one SELECT, read-only, with a row limit
and a time limit, answered over the ledger's request/reply like every other read.

Embedded chDB allows one process per data directory, so while the gateway runs only the
ledger can open it; this is the analysts' way in. The statement runs wrapped as
`SELECT * FROM (<statement>) SETTINGS …, readonly = 1`: query-scoped settings (they do
not stick to the client, which a `SET` would), `readonly` last so the limits before it
still apply and nothing inside can lift them. It runs on a client of its own, so a long
analysis never holds up the API's status reads.
"""

from __future__ import annotations

import math
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from clickhouse_connect.driver.exceptions import OperationalError

from services.ledger.clickhouse import STORAGE_ERRORS, StorageUnavailable
from shared.contracts import SqlQuery, SqlResult
from shared.read_only_sql import NotASelect, select_statement

READ_ONLY_SETTINGS = (
    "max_result_rows = {rows}, result_overflow_mode = 'break', "
    "max_execution_time = {seconds}, timeout_overflow_mode = 'throw', readonly = 1"
)


def wrapped_statement(statement: str, max_rows: int, max_seconds: float) -> str:
    """The statement as the ledger runs it. One row more than asked, to know whether the
    result was cut off (`break` stops at a block's end, so more may come: cut in Python)."""
    settings = READ_ONLY_SETTINGS.format(rows=max_rows + 1, seconds=f"{max_seconds:g}")
    # The statement is the analyst's by design (select_statement checked it); on its own
    # line, so a trailing `-- comment` cannot swallow the closing parenthesis.
    return f"SELECT * FROM (\n{statement}\n) SETTINGS {settings}"  # noqa: S608


def json_value(value: Any) -> Any:
    """A ClickHouse value as JSON can carry it: numbers, text, booleans and null as they
    are, lists and maps inside out, the rest (Decimal, times, UUID, IPs) as text."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    if isinstance(value, list | tuple):
        return [json_value(item) for item in value]
    if isinstance(value, dict):
        return {str(key): json_value(item) for key, item in value.items()}
    if isinstance(value, Decimal):
        return str(value)
    return str(value)


class SqlPassthrough:
    def __init__(self, client: Any, max_rows: int, max_seconds: float) -> None:
        self._client = client
        self._max_rows = max_rows
        self._max_seconds = max_seconds

    def run(self, query: SqlQuery) -> SqlResult:
        """The statement's result, or `error` when it is refused; raises StorageUnavailable
        only when ClickHouse cannot be reached."""
        try:
            statement = select_statement(query.sql)
        except NotASelect as error:
            return SqlResult(error=str(error))
        rows_allowed = min(query.max_rows, self._max_rows)
        seconds_allowed = min(query.max_seconds, self._max_seconds)
        try:
            result = self._client.query(wrapped_statement(statement, rows_allowed, seconds_allowed))
        except (OperationalError, OSError) as error:
            raise StorageUnavailable(f"SQL query failed: {error}") from error
        except STORAGE_ERRORS as error:
            # ClickHouse's own words: a syntax error, an unknown column, READONLY, a timeout.
            return SqlResult(error=_first_line(str(error)))
        rows = result.result_rows
        return SqlResult(
            columns=list(result.column_names),
            types=[column_type.name for column_type in result.column_types],
            rows=[[json_value(value) for value in row] for row in rows[:rows_allowed]],
            truncated=len(rows) > rows_allowed,
        )


def _first_line(message: str) -> str:
    """ClickHouse errors carry the statement and a stack trace after the reason."""
    return message.strip().splitlines()[0][:1000] if message.strip() else "ClickHouse refused the statement"
