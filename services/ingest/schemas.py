"""The HTTP API's response bodies, as the contract defines them (and, for the reads the
contract leaves open, as the gateway answers them). They are also the OpenAPI description's
models: `Annotated[..., KwargDefinition(...)]` adds what JSON types cannot say (formats,
descriptions), which only the description reads."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Literal

import msgspec
from litestar.params import KwargDefinition
from msgspec import UNSET, UnsetType

from shared.contracts import DeliveryStatus
from shared.errors import ErrorCode

Uuid = Annotated[str, KwargDefinition(format="uuid")]
Timestamp = Annotated[str, KwargDefinition(format="date-time", description="ISO 8601, UTC, milliseconds")]
Day = Annotated[str, KwargDefinition(format="date", description="A UTC day, YYYY-MM-DD")]
Money = Annotated[str, KwargDefinition(pattern=r"^\d+\.\d{2}( [A-Z]{3})?$", description="Amount and currency")]


class SendResult(msgspec.Struct, rename="camel"):
    message_id: Uuid
    recipient_count: int
    sms_segments_per_recipient: int
    total_sms_segments: int
    estimated_cost: Money
    status: Literal["queued"]
    timestamp: Timestamp


class SendResponse(msgspec.Struct):
    success: bool
    data: SendResult


class ErrorDetail(msgspec.Struct, rename="camel", omit_defaults=True):
    code: ErrorCode
    message: str
    details: list[str] = msgspec.field(default_factory=list)
    retry_after: int | None = None


class ErrorResponse(msgspec.Struct):
    success: bool
    error: ErrorDetail


class CarrierVerdict(StrEnum):
    """What a carrier's delivery receipt says (`shared.contracts.ReceiptStatus`); an enum, not
    a Literal, so that "one of these or null" is one type in generated clients."""

    DELIVERED = "delivered"
    UNDELIVERED = "undelivered"
    EXPIRED = "expired"
    REJECTED = "rejected"
    DELETED = "deleted"
    ACCEPTED = "accepted"
    UNKNOWN = "unknown"


class RecipientStatus(msgspec.Struct, rename="camel"):
    recipient: str
    country: Annotated[str, KwargDefinition(description="ISO 3166 alpha-2; ZZ: unknown")]
    status: DeliveryStatus
    sms_segments: int
    cost: Annotated[Money, KwargDefinition(description="Billed for this recipient (0.00 unless sent)")]
    attempt: Annotated[int, KwargDefinition(description="0 while queued")]
    provider_reference: str | None
    error_code: Annotated[str | None, KwargDefinition(description="The catalogue's code of a failed send")]
    updated_at: Timestamp | None
    delivery_status: Annotated[CarrierVerdict | None, KwargDefinition(description="null: no receipt yet")]
    delivery_updated_at: Timestamp | None
    delivery_error: str | None


class StatusSummary(msgspec.Struct, rename="camel"):
    """Recipients by state (the carrier's verdicts counted apart)."""

    queued: int
    sent: int
    retrying: int
    failed: int
    dead_lettered: int
    delivered: int
    delivery_failed: int


class MessageStatus(msgspec.Struct, rename="camel"):
    message_id: Uuid
    status: Literal["queued", "processing", "sent", "partially_sent", "failed"]
    tag: str | None
    sender: str | None
    recipient_count: int
    sms_segments_per_recipient: int
    total_sms_segments: int
    estimated_cost: Money | None
    cost: Annotated[Money, KwargDefinition(description="Billed so far: the sent recipients' cost")]
    test: Annotated[bool, KwargDefinition(description="Sent with a test key: never delivered, never billed")]
    timestamp: Timestamp | None
    summary: StatusSummary
    recipients: list[RecipientStatus]


class MessageStatusResponse(msgspec.Struct):
    success: bool
    data: MessageStatus


class UsageRow(msgspec.Struct, rename="camel", omit_defaults=True, kw_only=True):
    """One group; exactly one of `day`, `tag` and `country` is present, the one `groupBy` names."""

    day: Day | UnsetType = UNSET
    tag: str | UnsetType = UNSET
    country: Annotated[str, KwargDefinition(description="ISO 3166 alpha-2")] | UnsetType = UNSET
    messages: Annotated[int, KwargDefinition(description="Messages with at least one recipient sent")]
    recipients: Annotated[int, KwargDefinition(description="Recipients sent")]
    sms_segments: int
    cost: Money


class UsageTotals(msgspec.Struct, rename="camel"):
    recipients: int
    sms_segments: int
    cost: Annotated[str, KwargDefinition(description="Per currency, joined by ' + ' if there are several")]


class Usage(msgspec.Struct, rename={"date_from": "from", "date_to": "to", "group_by": "groupBy"}):
    date_from: Day
    date_to: Day
    group_by: Literal["day", "tag", "country"]
    rows: list[UsageRow]
    totals: UsageTotals


class UsageResponse(msgspec.Struct):
    success: bool
    data: Usage
