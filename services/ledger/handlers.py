"""What the ledger does with one broker message: record an event, or answer a query.

Plain functions of (message, dependencies); `app.py` binds them to the subscribers.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from pydantic import TypeAdapter, ValidationError

from services.ledger.batcher import BatchNotWritten, RowBatcher
from services.ledger.clickhouse import StorageUnavailable
from services.ledger.metrics import LedgerMetrics
from services.ledger.reads import LedgerReader
from services.ledger.rows import EventRejected, RowChunk
from services.ledger.sql_passthrough import SqlPassthrough
from shared.contracts import (
    LedgerQuery,
    LedgerQueryFailure,
    LedgerReply,
    MessageStatusQuery,
    SqlQuery,
)

QUERY_ADAPTER: TypeAdapter[LedgerQuery] = TypeAdapter(LedgerQuery)


class Delivery(Protocol):
    """The part of a broker message the ledger uses (FastStream's `RabbitMessage`)."""

    @property
    def body(self) -> bytes: ...

    async def ack(self) -> None: ...

    async def nack(self) -> None: ...


DeadLetter = Callable[[bytes, str], Awaitable[None]]


async def record_event(
    delivery: Delivery,
    *,
    queue: str,
    decode: Callable[[bytes], RowChunk],
    batcher: RowBatcher,
    dead_letter: DeadLetter,
    metrics: LedgerMetrics,
    log: Any,
) -> None:
    """Ack `delivery` once its rows are in ClickHouse; requeue it if they never get there."""
    metrics.events_consumed.labels(queue).inc()
    try:
        chunk = decode(delivery.body)
    except EventRejected as error:
        # Retrying cannot fix a body: keep it for an operator and take it off the work queue.
        metrics.events_rejected.labels(queue).inc()
        log.error("ledger.event_rejected", queue=queue, reason=str(error)[:500])
        await dead_letter(delivery.body, str(error)[:1000])
        await delivery.ack()
        return
    if chunk.row_count:
        try:
            await batcher.submit(chunk)
        except BatchNotWritten:
            await delivery.nack()
            return
    await delivery.ack()


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
