"""What the ledger does with a query: a plain function of (body, dependencies).

Events are recorded by `intake.py`, a batch at a time.
"""

from __future__ import annotations

import asyncio
from typing import Any

from pydantic import TypeAdapter, ValidationError

from services.ledger.clickhouse import StorageUnavailable
from services.ledger.metrics import LedgerMetrics
from services.ledger.reads import LedgerReader
from services.ledger.sql_passthrough import SqlPassthrough
from shared.contracts import (
    LedgerQuery,
    LedgerQueryFailure,
    LedgerReply,
    MessageStatusQuery,
    SqlQuery,
)

QUERY_ADAPTER: TypeAdapter[LedgerQuery] = TypeAdapter(LedgerQuery)


async def answer_query(
    body: bytes, reader: LedgerReader, sql: SqlPassthrough, metrics: LedgerMetrics, log: Any
) -> LedgerReply:
    try:
        query = QUERY_ADAPTER.validate_json(body)
    except ValidationError as error:
        metrics.queries_answered.labels("invalid", "failure").inc()
        return LedgerQueryFailure(reason=f"invalid query: {error.error_count()} errors")
    try:
        if isinstance(query, MessageStatusQuery):
            reply: LedgerReply = await asyncio.to_thread(reader.message_status, query.project, query.message_id)
        elif isinstance(query, SqlQuery):
            # Logged without the statement: it may name a customer's number.
            reply = await asyncio.to_thread(sql.run, query)
        else:
            reply = await asyncio.to_thread(reader.usage, query)
    except StorageUnavailable as error:
        metrics.queries_answered.labels(query.kind, "failure").inc()
        log.warning("ledger.query_failed", kind=query.kind, error=str(error)[:500])
        return LedgerQueryFailure(reason="ClickHouse unavailable")
    metrics.queries_answered.labels(query.kind, "ok").inc()
    return reply
