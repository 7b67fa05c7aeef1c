"""The messages services exchange over RabbitMQ: the only coupling between them.

Every message carries `schema_version`. A consumer accepts the versions it knows and
dead-letters the rest with the reason, so a rolling upgrade never crash-loops a worker.
Money is `Decimal` on the wire (a JSON string), never a float.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

from shared.segments import Encoding


class Contract(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class SmsJob(Contract):
    """One accepted send request: published once by ingest, after validation.

    The same message is the job the dispatcher works on and the `accepted` event the
    ledger records: the `rsms.accepted` exchange fans it out to both queues, so one
    publisher confirm covers both (see `shared/topology.py`).

    The dispatcher republishes a job for a retry with only the recipients still to send
    and `attempt` raised; everything else stays as accepted.
    """

    schema_version: Literal[1] = 1
    message_id: UUID
    project: str
    key_id: str = Field(description="Id of the API key that sent it; never the key itself.")
    tag: str
    sender: str
    recipients: list[str] = Field(description="Normalised, de-duplicated E.164 numbers.")
    message: str
    encoding: Encoding
    segments: int = Field(description="Segments per recipient.")
    prices: dict[str, Decimal] = Field(
        description="Price per segment by destination country, as applied at acceptance."
    )
    default_price: Decimal = Field(description="Price per segment for any other country.")
    currency: str
    estimated_cost: Decimal = Field(description="For all recipients, in `currency`.")
    test: bool = Field(description="Sent with an sk_test_ key: never sent for real nor billed.")
    store_body: bool = Field(description="Whether the ledger may keep the message text.")
    accepted_at: datetime
    attempt: int = 1

    def price_for(self, country: str) -> Decimal:
        return self.prices.get(country, self.default_price)


RecipientStatus = Literal["sent", "retrying", "failed", "dead_lettered"]


class RecipientOutcome(Contract):
    recipient: str
    country: str
    status: RecipientStatus
    segments: int
    cost: Decimal = Field(description="What this recipient is billed: zero unless sent for real.")
    provider_reference: str | None = None
    error_code: str | None = None
    error_message: str | None = None


class OutcomeEvent(Contract):
    """One dispatch attempt of one job: every recipient it tried, in one message."""

    schema_version: Literal[1] = 1
    event_id: UUID = Field(description="Stable per job attempt, so a redelivery is recognisable.")
    message_id: UUID
    project: str
    tag: str
    sender: str
    test: bool
    currency: str
    attempt: int
    occurred_at: datetime
    outcomes: list[RecipientOutcome]


# --- Ledger reads (request/reply over RabbitMQ; the ledger owns the ClickHouse data) ---


class MessageStatusQuery(Contract):
    schema_version: Literal[1] = 1
    project: str
    message_id: UUID


class RecipientStatusRow(Contract):
    recipient: str
    country: str
    status: str
    segments: int
    cost: Decimal
    attempt: int
    provider_reference: str | None
    error_code: str | None
    updated_at: datetime


class MessageStatusReport(Contract):
    found: bool
    message_id: UUID
    project: str
    tag: str | None = None
    sender: str | None = None
    recipient_count: int = 0
    segments_per_recipient: int = 0
    estimated_cost: Decimal | None = None
    currency: str | None = None
    test: bool = False
    accepted_at: datetime | None = None
    recipients: list[RecipientStatusRow] = Field(default_factory=list)


UsageGrouping = Literal["day", "tag", "country"]


class UsageQuery(Contract):
    schema_version: Literal[1] = 1
    project: str | None = Field(description="None: every project (operators only).")
    date_from: datetime
    date_to: datetime
    group_by: UsageGrouping
    include_test: bool = False


class UsageRow(Contract):
    project: str
    group: str
    messages: int
    recipients: int
    segments: int
    cost: Decimal
    currency: str


class UsageReport(Contract):
    rows: list[UsageRow]
