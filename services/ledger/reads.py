"""Billing and status reads over the ledger tables.

Redelivered events can leave duplicate rows until ClickHouse merges them, so every read
deduplicates itself: billing counts a recipient of a message once (a recipient is sent at
most once), status takes each recipient's latest attempt and its delivery status (the
carrier's receipts: final over intermediate, then latest). No read depends on `FINAL` or
on merges having happened.

Identifiers in the SQL come from settings and fixed maps; every value is a bound
parameter.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

from services.ledger.clickhouse import STORAGE_ERRORS, StorageUnavailable
from services.ledger.schema import OUTCOMES_TABLE, RECEIPTS_TABLE, REQUESTS_TABLE
from shared.contracts import (
    MessageStatusReport,
    RecipientStatusRow,
    UsageGrouping,
    UsageQuery,
    UsageReport,
    UsageRow,
)
from shared.countries import country_of

USAGE_GROUP_EXPRESSIONS: dict[UsageGrouping, str] = {
    "day": "toString(toDate(sent_at))",
    "tag": "sent_tag",
    "country": "sent_country",
}

USAGE_SQL = """
    SELECT project, {group} AS grp, sent_currency,
           uniqExact(message_id), count(), sum(sent_segments), sum(sent_cost)
    FROM (
        SELECT project, message_id, recipient,
               any(tag) AS sent_tag, any(country) AS sent_country,
               any(currency) AS sent_currency, any(segments) AS sent_segments,
               any(cost) AS sent_cost, min(occurred_at) AS sent_at
        FROM {database}.{table}
        WHERE {conditions}
        GROUP BY project, message_id, recipient
    )
    GROUP BY project, grp, sent_currency
    ORDER BY project, grp, sent_currency
"""

REQUEST_SQL = """
    SELECT tag, sender, recipients, segments, estimated_cost, currency, test, accepted_at
    FROM {database}.{table}
    WHERE project = {{project:String}} AND message_id = {{message_id:UUID}}
    LIMIT 1
"""

# A tuple, not one argMax per column: argMax skips NULLs, which would mix attempts.
# (replay, attempt) orders attempts: a replayed dead letter starts again at attempt 1.
LATEST_OUTCOMES_SQL = """
    SELECT recipient, argMax(attempt, (replay, attempt)),
           argMax((country, status, segments, cost, provider_reference, error_code, occurred_at),
                  (replay, attempt))
    FROM {database}.{table}
    WHERE project = {{project:String}} AND message_id = {{message_id:UUID}}
    GROUP BY recipient
    ORDER BY recipient
"""

# Each recipient's delivery status: a final one (delivered, undelivered, …) over an
# intermediate one (accepted), then the latest. Duplicate rows pick the same tuple.
LATEST_RECEIPTS_SQL = """
    SELECT recipient, argMax((status, error_code, occurred_at), (final, occurred_at))
    FROM {database}.{table}
    WHERE project = {{project:String}} AND message_id = {{message_id:UUID}}
    GROUP BY recipient
"""


# Live traffic per minute for the status page: recipients accepted (each request once),
# and recipients whose attempt ended sent or failed (each attempt once). Test traffic is
# left out: it is never sent and never fails for real.
ACCEPTED_PER_MINUTE_SQL = """
    SELECT minute, sum(recipients) FROM (
        SELECT message_id, toStartOfMinute(any(accepted_at)) AS minute, any(recipient_count) AS recipients
        FROM {database}.{table}
        WHERE accepted_at >= {{since:DateTime64(3, 'UTC')}} AND NOT test
        GROUP BY message_id
    )
    GROUP BY minute
"""

OUTCOMES_PER_MINUTE_SQL = """
    SELECT minute, countIf(status = 'sent'), countIf(status IN ('failed', 'dead_lettered')) FROM (
        SELECT toStartOfMinute(any(occurred_at)) AS minute, any(status) AS status
        FROM {database}.{table}
        WHERE occurred_at >= {{since:DateTime64(3, 'UTC')}} AND NOT test
        GROUP BY message_id, recipient, replay, attempt
    )
    GROUP BY minute
"""


class LedgerReader:
    def __init__(self, client: Any, database: str) -> None:
        self._client = client
        self._database = database

    def message_status(self, project: str, message_id: UUID) -> MessageStatusReport:
        parameters = {"project": project, "message_id": message_id}
        try:
            requests = self._client.query(
                REQUEST_SQL.format(database=self._database, table=REQUESTS_TABLE),
                parameters=parameters,
            ).result_rows
            outcomes = self._client.query(
                LATEST_OUTCOMES_SQL.format(database=self._database, table=OUTCOMES_TABLE),
                parameters=parameters,
            ).result_rows
            receipts = self._client.query(
                LATEST_RECEIPTS_SQL.format(database=self._database, table=RECEIPTS_TABLE),
                parameters=parameters,
            ).result_rows
        except STORAGE_ERRORS as error:
            raise StorageUnavailable(f"status read failed: {error}") from error
        if not requests and not outcomes:
            return MessageStatusReport(found=False, message_id=message_id, project=project)
        delivery = {recipient: latest for recipient, latest in receipts}
        attempted = [
            _recipient_row(recipient, attempt, latest, delivery.get(recipient))
            for recipient, attempt, latest in outcomes
        ]
        billed = sum((r.cost for r in attempted if r.status == "sent"), Decimal(0))
        if not requests:
            # The outcome arrived before the accepted event: report what is known.
            return MessageStatusReport(
                found=True,
                message_id=message_id,
                project=project,
                recipient_count=len(attempted),
                segments_per_recipient=attempted[0].segments,
                cost=billed,
                recipients=attempted,
            )
        tag, sender, listed, segments, estimated, currency, test, accepted_at = requests[0]
        seen = {row.recipient for row in attempted}
        queued = [
            RecipientStatusRow(
                recipient=number,
                country=country_of(number),
                status="queued",
                segments=segments,
                cost=Decimal(0),
                attempt=0,
            )
            for number in listed
            if number not in seen
        ]
        return MessageStatusReport(
            found=True,
            message_id=message_id,
            project=project,
            tag=tag,
            sender=sender,
            recipient_count=len(listed),
            segments_per_recipient=segments,
            estimated_cost=estimated,
            cost=billed,
            currency=currency,
            test=test,
            accepted_at=_utc(accepted_at),
            recipients=sorted(attempted + queued, key=lambda row: row.recipient),
        )

    def traffic_per_minute(self, since: datetime) -> dict[datetime, tuple[int, int, int]]:
        """(accepted, sent, failed) recipients of live traffic per UTC minute from `since`;
        minutes without any are absent."""
        parameters = {"since": since.astimezone(UTC).replace(tzinfo=None)}
        try:
            accepted = self._client.query(
                ACCEPTED_PER_MINUTE_SQL.format(database=self._database, table=REQUESTS_TABLE), parameters=parameters
            ).result_rows
            outcomes = self._client.query(
                OUTCOMES_PER_MINUTE_SQL.format(database=self._database, table=OUTCOMES_TABLE), parameters=parameters
            ).result_rows
        except STORAGE_ERRORS as error:
            raise StorageUnavailable(f"traffic read failed: {error}") from error
        counts: dict[datetime, tuple[int, int, int]] = {}
        for minute, recipients in accepted:
            counts[_utc(minute)] = (int(recipients), 0, 0)
        for minute, sent, failed in outcomes:
            known = counts.get(_utc(minute), (0, 0, 0))
            counts[_utc(minute)] = (known[0], int(sent), int(failed))
        return counts

    def usage(self, query: UsageQuery) -> UsageReport:
        conditions = [
            "status = 'sent'",
            "occurred_at >= {date_from:DateTime64(3, 'UTC')}",
            "occurred_at < {date_to:DateTime64(3, 'UTC')}",
        ]
        parameters: dict[str, Any] = {
            "date_from": query.date_from.astimezone(UTC).replace(tzinfo=None),
            "date_to": query.date_to.astimezone(UTC).replace(tzinfo=None),
        }
        if query.project is not None:
            conditions.append("project = {project:String}")
            parameters["project"] = query.project
        if not query.include_test:
            conditions.append("NOT test")
        sql = USAGE_SQL.format(
            group=USAGE_GROUP_EXPRESSIONS[query.group_by],
            database=self._database,
            table=OUTCOMES_TABLE,
            conditions=" AND ".join(conditions),
        )
        try:
            result = self._client.query(sql, parameters=parameters).result_rows
        except STORAGE_ERRORS as error:
            raise StorageUnavailable(f"usage read failed: {error}") from error
        return UsageReport(
            group_by=query.group_by,
            date_from=query.date_from,
            date_to=query.date_to,
            rows=[
                UsageRow(
                    project=project,
                    group=group,
                    currency=currency,
                    messages=messages,
                    recipients=recipients,
                    segments=segments,
                    cost=cost,
                )
                for project, group, currency, messages, recipients, segments, cost in result
            ],
        )


def _recipient_row(
    recipient: str, attempt: int, latest: tuple[Any, ...], receipt: tuple[Any, ...] | None
) -> RecipientStatusRow:
    country, status, segments, cost, reference, error_code, occurred_at = latest
    delivery_status, delivery_error, delivered_at = receipt if receipt is not None else (None, None, None)
    return RecipientStatusRow(
        recipient=recipient,
        country=country,
        status=status,
        segments=segments,
        cost=cost,
        attempt=attempt,
        provider_reference=reference,
        error_code=error_code,
        updated_at=_utc(occurred_at),
        delivery_status=delivery_status,
        delivery_updated_at=_utc(delivered_at) if delivered_at is not None else None,
        delivery_error=delivery_error,
    )


def _utc(value: datetime) -> datetime:
    # chDB returns DateTime64('UTC') values without their zone; a server returns them aware.
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
