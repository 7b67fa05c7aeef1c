"""The gateway's answers as typed values, field for field (camelCase in JSON, snake_case here).

Each model reads the `data` object of a `{"success": true, "data": …}` answer. Fields the
gateway may add later are ignored, so a newer gateway does not break an older client.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any


def parse_timestamp(value: Any) -> datetime | None:
    """ISO 8601 as the gateway writes it (`2026-01-03T10:30:00.000Z`), aware, in UTC."""
    if not value:
        return None
    return datetime.fromisoformat(str(value).replace("Z", "+00:00"))


def _int(value: Any) -> int:
    return int(value) if value is not None else 0


@dataclass(frozen=True)
class SendResult:
    """The answer to one send: the message is queued."""

    message_id: str
    recipient_count: int
    sms_segments_per_recipient: int
    total_sms_segments: int
    estimated_cost: str
    """Amount and currency as the gateway writes them, e.g. `"1.34 NOK"`."""
    status: str
    """Always `"queued"`."""
    timestamp: datetime | None

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> SendResult:
        return cls(
            message_id=str(data["messageId"]),
            recipient_count=int(data["recipientCount"]),
            sms_segments_per_recipient=int(data["smsSegmentsPerRecipient"]),
            total_sms_segments=int(data["totalSmsSegments"]),
            estimated_cost=str(data["estimatedCost"]),
            status=str(data["status"]),
            timestamp=parse_timestamp(data.get("timestamp")),
        )


@dataclass(frozen=True)
class SendProgress:
    """Where a `send_many()` is, after each batch it queued."""

    batches_sent: int
    batches_total: int
    recipients_sent: int
    recipients_total: int
    last: SendResult


@dataclass(frozen=True)
class BulkSendResult:
    """What `send_many()` queued: one `SendResult` per batch, in order."""

    results: list[SendResult]

    @property
    def message_ids(self) -> list[str]:
        return [result.message_id for result in self.results]

    @property
    def recipient_count(self) -> int:
        return sum(result.recipient_count for result in self.results)

    @property
    def total_sms_segments(self) -> int:
        return sum(result.total_sms_segments for result in self.results)


@dataclass(frozen=True)
class RecipientStatus:
    recipient: str
    status: str
    """queued, sent, retrying, failed or dead_lettered."""
    country: str | None
    sms_segments: int
    cost: str | None
    attempt: int
    provider_reference: str | None
    error_code: str | None
    updated_at: datetime | None
    delivery_status: str | None
    """What the carrier reported after the send, null until it did: delivered, undelivered,
    expired, rejected, deleted, accepted or unknown."""
    delivery_updated_at: datetime | None
    delivery_error: str | None

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> RecipientStatus:
        return cls(
            recipient=str(data["recipient"]),
            status=str(data["status"]),
            country=data.get("country"),
            sms_segments=_int(data.get("smsSegments")),
            cost=data.get("cost"),
            attempt=_int(data.get("attempt")),
            provider_reference=data.get("providerReference"),
            error_code=data.get("errorCode"),
            updated_at=parse_timestamp(data.get("updatedAt")),
            delivery_status=data.get("deliveryStatus"),
            delivery_updated_at=parse_timestamp(data.get("deliveryUpdatedAt")),
            delivery_error=data.get("deliveryError"),
        )


@dataclass(frozen=True)
class StatusSummary:
    """How many recipients are in each state."""

    queued: int
    sent: int
    retrying: int
    failed: int
    dead_lettered: int
    delivered: int
    delivery_failed: int

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> StatusSummary:
        return cls(
            queued=_int(data.get("queued")),
            sent=_int(data.get("sent")),
            retrying=_int(data.get("retrying")),
            failed=_int(data.get("failed")),
            dead_lettered=_int(data.get("deadLettered")),
            delivered=_int(data.get("delivered")),
            delivery_failed=_int(data.get("deliveryFailed")),
        )


@dataclass(frozen=True)
class MessageStatus:
    """`GET /api/v1/sms/{messageId}`: a message and each of its recipients."""

    message_id: str
    status: str
    """queued, processing, sent, partially_sent or failed."""
    tag: str | None
    sender: str | None
    recipient_count: int
    sms_segments_per_recipient: int
    total_sms_segments: int
    estimated_cost: str | None
    cost: str | None
    """What was billed so far (sent recipients of live keys)."""
    test: bool
    timestamp: datetime | None
    summary: StatusSummary
    recipients: list[RecipientStatus]

    @property
    def final(self) -> bool:
        """No recipient is still queued or being retried."""
        return self.status in {"sent", "partially_sent", "failed"}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> MessageStatus:
        return cls(
            message_id=str(data["messageId"]),
            status=str(data["status"]),
            tag=data.get("tag"),
            sender=data.get("sender"),
            recipient_count=_int(data.get("recipientCount")),
            sms_segments_per_recipient=_int(data.get("smsSegmentsPerRecipient")),
            total_sms_segments=_int(data.get("totalSmsSegments")),
            estimated_cost=data.get("estimatedCost"),
            cost=data.get("cost"),
            test=bool(data.get("test", False)),
            timestamp=parse_timestamp(data.get("timestamp")),
            summary=StatusSummary.from_json(data.get("summary") or {}),
            recipients=[RecipientStatus.from_json(row) for row in data.get("recipients") or []],
        )


@dataclass(frozen=True)
class UsageRow:
    group: str
    """The day (YYYY-MM-DD), tag or country of this row, as grouped by."""
    messages: int
    recipients: int
    sms_segments: int
    cost: str


@dataclass(frozen=True)
class UsageTotals:
    recipients: int
    sms_segments: int
    cost: str


@dataclass(frozen=True)
class Usage:
    """`GET /api/v1/usage`: billed usage of the key's project over whole UTC days."""

    date_from: date
    date_to: date
    group_by: str
    rows: list[UsageRow]
    totals: UsageTotals

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Usage:
        group_by = str(data["groupBy"])
        totals = data.get("totals") or {}
        return cls(
            date_from=date.fromisoformat(str(data["from"])),
            date_to=date.fromisoformat(str(data["to"])),
            group_by=group_by,
            rows=[
                UsageRow(
                    group=str(row[group_by]),
                    messages=_int(row.get("messages")),
                    recipients=_int(row.get("recipients")),
                    sms_segments=_int(row.get("smsSegments")),
                    cost=str(row.get("cost")),
                )
                for row in data.get("rows") or []
            ],
            totals=UsageTotals(
                recipients=_int(totals.get("recipients")),
                sms_segments=_int(totals.get("smsSegments")),
                cost=str(totals.get("cost")),
            ),
        )
