"""Asking the ledger: message status and usage, request/reply over RabbitMQ.

The ledger owns its ClickHouse data (embedded chDB allows one process per data
directory), so ingest and the `rsms` CLI never open ClickHouse themselves: they publish
a query to `rsms.ledger.queries` and wait for the ledger's reply. The same path works
unchanged when the ledger runs against a ClickHouse server.

Also here: the JSON bodies of `GET /api/v1/sms/{messageId}` and `GET /api/v1/usage`, built
from the ledger's reports, so the HTTP layer stays a few lines.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any, get_args
from uuid import UUID, uuid4

from faststream.rabbit import RabbitBroker
from pydantic import TypeAdapter, ValidationError

from shared.contracts import (
    LedgerQuery,
    LedgerQueryFailure,
    LedgerReply,
    MessageStatusQuery,
    MessageStatusReport,
    RecipientStatusRow,
    SqlQuery,
    SqlResult,
    UsageGrouping,
    UsageQuery,
    UsageReport,
)
from shared.errors import ErrorCode, GatewayError
from shared.money import format_money
from shared.rabbitmq import DIRECT_REPLY_TO, AMQPError, RawConsumer, consume_direct_replies, consumer_attached
from shared.topology import LEDGER_QUERIES_QUEUE

REPLY_ADAPTER: TypeAdapter[LedgerReply] = TypeAdapter(LedgerReply)
USAGE_GROUPINGS: tuple[str, ...] = get_args(UsageGrouping)
MAX_USAGE_DAYS = 366
FIRST_USAGE_DAY = date(1970, 1, 1)
LAST_USAGE_DAY = date(2200, 12, 31)
# Receipt statuses that mean the SMS did not reach the handset (and never will).
DELIVERY_FAILURES = frozenset({"undelivered", "expired", "rejected", "deleted"})


class LedgerQueries:
    """The caller's side of the ledger's queries; `broker` must be connected.

    Queries run concurrently: replies come back on RabbitMQ's direct reply-to pseudo-queue
    through one consumer, and each finds its caller by correlation id. (FastStream's own
    `broker.request` holds a lock for the whole round trip, so one slow usage query would
    hold up every status query of the process behind it.)
    """

    def __init__(self, broker: RabbitBroker, timeout: float = 10.0) -> None:
        self._broker = broker
        self._timeout = timeout
        self._waiting: dict[str, asyncio.Future[bytes]] = {}
        self._listening: asyncio.Lock | None = None
        self._consumer_ready = False
        self._replies: RawConsumer | None = None

    async def message_status(self, project: str, message_id: UUID) -> MessageStatusReport:
        """`found` is False for an unknown id and for another project's message alike."""
        reply = await self._ask(MessageStatusQuery(project=project, message_id=message_id))
        if not isinstance(reply, MessageStatusReport):
            raise _unavailable(f"unexpected reply {reply.kind!r} to a status query")
        return reply

    async def usage(
        self,
        project: str | None,
        date_from: date,
        date_to: date,
        group_by: UsageGrouping,
        *,
        include_test: bool = False,
    ) -> UsageReport:
        """Billed usage from `date_from` through `date_to` (whole UTC days, both included)."""
        start, end = usage_window(date_from, date_to)
        reply = await self._ask(
            UsageQuery(project=project, date_from=start, date_to=end, group_by=group_by, include_test=include_test)
        )
        if not isinstance(reply, UsageReport):
            raise _unavailable(f"unexpected reply {reply.kind!r} to a usage query")
        return reply

    async def sql(self, statement: str, *, max_rows: int, max_seconds: float) -> SqlResult:
        """An analyst's SELECT, read-only; a refused one comes back with `error` set. Waits
        for the ledger's own time limit plus this caller's timeout (queueing, transfer)."""
        query = SqlQuery(sql=statement, max_rows=max_rows, max_seconds=max_seconds)
        reply = await self._ask(query, wait_seconds=self._timeout + max_seconds)
        if not isinstance(reply, SqlResult):
            raise _unavailable(f"unexpected reply {reply.kind!r} to an SQL query")
        return reply

    async def _ask(self, query: LedgerQuery, wait_seconds: float | None = None) -> LedgerReply:
        timeout = wait_seconds or self._timeout
        correlation_id = uuid4().hex
        answer: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self._waiting[correlation_id] = answer
        try:
            await self._listen()
            await self._broker.publish(
                query.model_dump_json().encode(),
                queue=LEDGER_QUERIES_QUEUE.name,
                reply_to=DIRECT_REPLY_TO,
                correlation_id=correlation_id,
                # A query nobody took in time is useless: let the broker drop it.
                expiration=timeout,
                content_type="application/json",
            )
            async with asyncio.timeout(timeout):
                body = await answer
        except TimeoutError as error:
            raise _unavailable(f"no answer within {timeout:g} s") from error
        except (AMQPError, ConnectionError) as error:
            raise _unavailable("the broker is unreachable") from error
        finally:
            self._waiting.pop(correlation_id, None)
        try:
            reply = REPLY_ADAPTER.validate_json(body)
        except ValidationError as error:
            raise _unavailable("unreadable reply") from error
        if isinstance(reply, LedgerQueryFailure):
            raise _unavailable(reply.reason)
        return reply

    async def _listen(self) -> None:
        """Consume the reply pseudo-queue once (`shared.rabbitmq.consume_direct_replies`)."""
        if self._consumer_ready:
            return
        if self._listening is None:
            self._listening = asyncio.Lock()
        async with self._listening:
            if self._consumer_ready:
                return
            self._replies = await consume_direct_replies(self._broker, self._on_reply)
            self._consumer_ready = True

    def reply_consumer_missing(self) -> bool:
        """Started, but not attached now (a node lost, not yet re-consumed): readiness."""
        replies = self._replies
        return self._consumer_ready and (replies is None or not consumer_attached(replies.queue, replies.consumer_tag))

    def _on_reply(self, correlation_id: str, body: bytes) -> None:
        waiting = self._waiting.get(correlation_id)
        if waiting is not None and not waiting.done():
            waiting.set_result(body)
        # A reply nobody waits for any more (its caller timed out) is dropped.


def _unavailable(reason: str) -> GatewayError:
    return GatewayError(ErrorCode.INTERNAL_ERROR, f"Ledger unavailable: {reason}. Try again later")


# --- request parameters -------------------------------------------------------------


@dataclass(frozen=True)
class UsageParams:
    date_from: date
    date_to: date
    group_by: UsageGrouping


def parse_usage_params(date_from: str | None, date_to: str | None, group_by: str | None) -> UsageParams:
    """`from`, `to` (YYYY-MM-DD, UTC days, inclusive) and `groupBy` (default `day`).

    Raises the contract's VALIDATION_ERROR naming every bad parameter.
    """
    details: list[str] = []
    start = _parse_day("from", date_from, details)
    end = _parse_day("to", date_to, details)
    grouping = group_by or "day"
    if grouping not in USAGE_GROUPINGS:
        details.append(f"groupBy: must be one of {', '.join(USAGE_GROUPINGS)}, not '{grouping[:20]}'")
    if start and end:
        if end < start:
            details.append("to: must not be before from")
        elif (end - start).days >= MAX_USAGE_DAYS:
            details.append(f"to: a usage query spans at most {MAX_USAGE_DAYS} days")
    if details or start is None or end is None:
        raise GatewayError(ErrorCode.VALIDATION_ERROR, details=details)
    return UsageParams(start, end, grouping)  # type: ignore[arg-type]


def _parse_day(name: str, value: str | None, details: list[str]) -> date | None:
    if not value:
        details.append(f"{name}: required, a date like 2026-01-31")
        return None
    try:
        day = date.fromisoformat(value)
    except ValueError:
        details.append(f"{name}: expected a date like 2026-01-31, got '{value[:20]}'")
        return None
    if not FIRST_USAGE_DAY <= day <= LAST_USAGE_DAY:
        # ClickHouse's DateTime64 holds 1900-2299 only, and 9999-12-31 has no next day.
        details.append(f"{name}: must be a day from {FIRST_USAGE_DAY} to {LAST_USAGE_DAY}, not {day}")
        return None
    return day


def usage_window(date_from: date, date_to: date) -> tuple[datetime, datetime]:
    """Inclusive UTC days as the half-open interval the ledger queries."""
    return (
        datetime.combine(date_from, time.min, UTC),
        datetime.combine(date_to + timedelta(days=1), time.min, UTC),
    )


def not_found(message_id: UUID | str) -> GatewayError:
    """The answer for an unknown id and for another project's message: both look the same."""
    return GatewayError(
        ErrorCode.VALIDATION_ERROR,
        "Message not found",
        details=[f"messageId: no message {message_id} in this project"],
        status=404,
    )


# --- response bodies ----------------------------------------------------------------


def format_timestamp(moment: datetime | None) -> str | None:
    """ISO 8601 in UTC with milliseconds, like the contract's `timestamp`."""
    if moment is None:
        return None
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def message_status_body(report: MessageStatusReport) -> dict[str, Any]:
    """`{"success": true, "data": …}` for `GET /api/v1/sms/{messageId}`; raises not-found."""
    if not report.found:
        raise not_found(report.message_id)
    currency = report.currency
    counts = {status: 0 for status in ("queued", "sent", "retrying", "failed", "dead_lettered")}
    for row in report.recipients:
        counts[row.status] += 1
    return {
        "success": True,
        "data": {
            "messageId": str(report.message_id),
            "status": overall_status(report.recipients),
            "tag": report.tag,
            "sender": report.sender,
            "recipientCount": report.recipient_count,
            "smsSegmentsPerRecipient": report.segments_per_recipient,
            "totalSmsSegments": report.recipient_count * report.segments_per_recipient,
            "estimatedCost": (
                format_money(report.estimated_cost, currency) if report.estimated_cost is not None else None
            ),
            "cost": format_money(report.cost, currency),
            "test": report.test,
            "timestamp": format_timestamp(report.accepted_at),
            "summary": {
                "queued": counts["queued"],
                "sent": counts["sent"],
                "retrying": counts["retrying"],
                "failed": counts["failed"],
                "deadLettered": counts["dead_lettered"],
                "delivered": sum(1 for row in report.recipients if row.delivery_status == "delivered"),
                "deliveryFailed": sum(1 for row in report.recipients if row.delivery_status in DELIVERY_FAILURES),
            },
            "recipients": [_recipient_body(row, currency) for row in report.recipients],
        },
    }


def overall_status(recipients: list[RecipientStatusRow]) -> str:
    """queued → processing → sent | partially_sent | failed, from the recipients' states."""
    states = {row.status for row in recipients}
    if not states or states == {"queued"}:
        return "queued"
    if states & {"queued", "retrying"}:
        return "processing"
    if states == {"sent"}:
        return "sent"
    return "partially_sent" if "sent" in states else "failed"


def _recipient_body(row: RecipientStatusRow, currency: str | None) -> dict[str, Any]:
    return {
        "recipient": row.recipient,
        "country": row.country,
        "status": row.status,
        "smsSegments": row.segments,
        "cost": format_money(row.cost, currency),
        "attempt": row.attempt,
        "providerReference": row.provider_reference,
        "errorCode": row.error_code,
        "updatedAt": format_timestamp(row.updated_at),
        # What the carrier reported after the send (null until a receipt arrives):
        # delivered, undelivered, expired, rejected, deleted, accepted or unknown.
        "deliveryStatus": row.delivery_status,
        "deliveryUpdatedAt": format_timestamp(row.delivery_updated_at),
        "deliveryError": row.delivery_error,
    }


def usage_body(report: UsageReport, params: UsageParams, currency: str) -> dict[str, Any]:
    """`{"success": true, "data": …}` for `GET /api/v1/usage` of one project; `currency`
    (the gateway's) names the zero total of a period without rows."""
    key = params.group_by
    costs: dict[str, Decimal] = {}
    rows = []
    for row in report.rows:
        rows.append(
            {
                key: row.group,
                "messages": row.messages,
                "recipients": row.recipients,
                "smsSegments": row.segments,
                "cost": format_money(row.cost, row.currency),
            }
        )
        costs[row.currency] = costs.get(row.currency, Decimal(0)) + row.cost
    return {
        "success": True,
        "data": {
            "from": params.date_from.isoformat(),
            "to": params.date_to.isoformat(),
            "groupBy": key,
            "rows": rows,
            "totals": {
                "recipients": sum(row.recipients for row in report.rows),
                "smsSegments": sum(row.segments for row in report.rows),
                # One currency per gateway in practice; several are listed, never added up.
                "cost": " + ".join(format_money(c, cur) for cur, c in sorted(costs.items()))
                or format_money(Decimal(0), currency),
            },
        },
    }
