"""The messages services exchange over RabbitMQ: the only coupling between them.

Every message carries `schema_version`. A consumer accepts the versions it knows and
dead-letters the rest with the reason, so a rolling upgrade never crash-loops a worker.
Money is `Decimal` on the wire (a JSON string), never a float.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

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
    replay: int = Field(0, description="Times an operator replayed it from the dead-letter queue (`rsms dlq replay`).")

    def price_for(self, country: str) -> Decimal:
        return self.prices.get(country, self.default_price)


class SmsJobBatch(Contract):
    """Send requests one ingest accepted together: one broker message and one publisher
    confirm for all of them (group commit, `services/ingest/publisher.py`).

    Each job is exactly the `SmsJob` it would have been alone; consumers treat the jobs as
    separate jobs. Ingest publishes a group of one as a plain `SmsJob` (message type
    "SmsJob/1"), a larger one as this ("SmsJobBatch/1"); consumers accept both, told apart
    by the body: only a batch has `jobs`.
    """

    schema_version: Literal[1] = 1
    jobs: list[SmsJob] = Field(min_length=1)


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
    replay: int = Field(
        0,
        description="The job's `replay` count: attempts restart at 1 when an operator replays "
        "a dead letter, so (replay, attempt) orders a recipient's attempts for the ledger.",
    )


class OutcomeBatch(Contract):
    """The outcome events of every job of one delivered `SmsJobBatch`, published as one
    message with one confirm. Each event keeps its own `event_id` (per job attempt), so
    consumers deduplicate event by event exactly as for a plain `OutcomeEvent`, which a
    delivery of one job still produces."""

    schema_version: Literal[1] = 1
    events: list[OutcomeEvent] = Field(min_length=1)


# --- Ledger reads (request/reply over RabbitMQ; the ledger owns the ClickHouse data) ---
#
# Callers use `shared/ledger_queries.py`; the ledger answers on `LEDGER_QUERIES_QUEUE`.
# `kind` tells the queries (and the replies) apart on the one queue.


class MessageStatusQuery(Contract):
    schema_version: Literal[1] = 1
    kind: Literal["message_status"] = "message_status"
    project: str = Field(description="Only this project's message is found: another's is not-found.")
    message_id: UUID


DeliveryStatus = Literal["queued", "sent", "retrying", "failed", "dead_lettered"]
# What a carrier reports after a send (`ReceiptEvent`); the carrier-events section below.
ReceiptStatus = Literal["delivered", "undelivered", "expired", "rejected", "deleted", "accepted", "unknown"]


class RecipientStatusRow(Contract):
    """One recipient as of its latest attempt (`queued`: no attempt recorded yet)."""

    recipient: str
    country: str
    status: DeliveryStatus
    segments: int
    cost: Decimal
    attempt: int = Field(description="0 while queued.")
    provider_reference: str | None = None
    error_code: str | None = None
    updated_at: datetime | None = None
    delivery_status: ReceiptStatus | None = Field(
        None, description="What the carrier's delivery receipts say (latest, final first); None: no receipt yet."
    )
    delivery_updated_at: datetime | None = Field(None, description="When the carrier says that status was reached.")
    delivery_error: str | None = Field(None, description="The carrier's error code of a failed delivery, as reported.")


class MessageStatusReport(Contract):
    kind: Literal["message_status"] = "message_status"
    found: bool
    message_id: UUID
    project: str
    tag: str | None = None
    sender: str | None = None
    recipient_count: int = 0
    segments_per_recipient: int = 0
    estimated_cost: Decimal | None = None
    cost: Decimal = Field(Decimal(0), description="Billed so far: the sent recipients' cost.")
    currency: str | None = None
    test: bool = False
    accepted_at: datetime | None = None
    recipients: list[RecipientStatusRow] = Field(default_factory=list)


UsageGrouping = Literal["day", "tag", "country"]


class UsageQuery(Contract):
    """Billed usage (sent recipients of non-test messages) in [date_from, date_to)."""

    schema_version: Literal[1] = 1
    kind: Literal["usage"] = "usage"
    project: str | None = Field(description="None: every project (operators only).")
    date_from: datetime
    date_to: datetime = Field(description="Exclusive.")
    group_by: UsageGrouping
    include_test: bool = False


class UsageRow(Contract):
    project: str
    group: str = Field(description="The day (YYYY-MM-DD, UTC), tag or country of the row.")
    currency: str
    messages: int = Field(description="Messages with at least one recipient sent.")
    recipients: int = Field(description="Recipients sent.")
    segments: int
    cost: Decimal


class UsageReport(Contract):
    kind: Literal["usage"] = "usage"
    group_by: UsageGrouping
    date_from: datetime
    date_to: datetime
    rows: list[UsageRow]


class SqlQuery(Contract):
    """An analyst's SELECT (`rsms sql`), run read-only within the limits below."""

    schema_version: Literal[1] = 1
    kind: Literal["sql"] = "sql"
    sql: str = Field(max_length=100_000)
    max_rows: int = Field(ge=1, description="Rows returned at most; the rest is cut off (`truncated`).")
    max_seconds: float = Field(gt=0, description="ClickHouse stops the query after this long.")


class SqlResult(Contract):
    kind: Literal["sql"] = "sql"
    columns: list[str] = Field(default_factory=list)
    types: list[str] = Field(default_factory=list, description="ClickHouse type of each column.")
    rows: list[list[Any]] = Field(
        default_factory=list, description="JSON values: numbers, text, booleans, null, lists, objects; others as text."
    )
    truncated: bool = Field(False, description="More rows than `max_rows` matched.")
    error: str | None = Field(None, description="Why ClickHouse (or the read-only check) refused the statement.")


class LedgerQueryFailure(Contract):
    """The ledger took the query but could not answer it (ClickHouse unreachable)."""

    kind: Literal["failure"] = "failure"
    reason: str


LedgerQuery = Annotated[MessageStatusQuery | UsageQuery | SqlQuery, Field(discriminator="kind")]
LedgerReply = Annotated[MessageStatusReport | UsageReport | SqlResult | LedgerQueryFailure, Field(discriminator="kind")]


# --- Dead letters (the dispatcher's give-ups; operators use `rsms dlq`) ---


DeadLetterReason = Literal["attempts_exhausted", "invalid_job", "outcome_unknown"]


class DeadLetter(Contract):
    """A job the dispatcher gave up on, kept in `DEAD_LETTER_QUEUE` for an operator.

    `job` holds only the recipients still unsent, ready to replay. A job that could not be
    read at all has no `job`: `body` keeps what arrived (as text, for inspection only).
    """

    schema_version: Literal[1] = 1
    reason: DeadLetterReason
    detail: str = Field(description="Why, for an operator: never a number or a message text.")
    dead_lettered_at: datetime
    message_id: UUID | None = None
    attempts: int = 0
    job: SmsJob | None = None
    body: str | None = None


# --- Carrier events (delivery receipts, inbound SMS): the dispatcher holds the carrier
# connection, turns what the carrier reports into these, and publishes them confirmed
# before it acknowledges the carrier (deliver_sm_resp / HTTP 200). See shared/topology.py.


class ReceiptEvent(Contract):
    """A recipient's delivery status as a carrier reported it, matched to its message.

    One event per recipient and status change: a multipart message is `delivered` when
    every part is, and takes the first failure of any part otherwise (the dispatcher
    aggregates the parts before it publishes). `final` is false for ACCEPTD/UNKNOWN-like
    intermediate states. Billing is unchanged by receipts: a recipient is billed on submit.
    """

    schema_version: Literal[1] = 1
    event_id: UUID = Field(description="Stable per recipient and status, so a redelivery is recognisable.")
    message_id: UUID
    project: str
    recipient: str
    status: ReceiptStatus
    final: bool
    error_code: str | None = Field(None, description="The carrier's error (the receipt's `err:`), as reported.")
    provider_reference: str | None = Field(None, description="The carrier's message id (of the last part).")
    occurred_at: datetime = Field(description="When the carrier says it happened (`done date`), else received_at.")
    received_at: datetime
    test: bool = False


class UnmatchedReceipt(Contract):
    """A receipt no sent part could be matched to (yet): kept for inspection, never dropped."""

    schema_version: Literal[1] = 1
    event_id: UUID
    provider_reference: str = Field(description="The carrier's message id the receipt names.")
    status: ReceiptStatus
    error_code: str | None = None
    received_at: datetime
    reason: str = Field(description="Why it did not match, for an operator.")
    occurred_at: datetime | None = Field(None, description="When the carrier says it happened (`done date`).")


OptOutAction = Literal["opt_out", "opt_in"]


class InboundMessage(Contract):
    """An SMS a mobile sent to one of the gateway's numbers (MO), as the carrier gave it.

    The dispatcher routes it before publishing: `project` is the project that owns
    `destination` (the accounts' inbound numbers), None when no project does (kept for an
    operator, never dropped). An opt-out keyword (STOP …) or START from the sender has
    already been applied to the project's opt-out list when this is published (`action`).
    Consumers record it, apply nothing twice (`event_id`) and notify the project.
    """

    schema_version: Literal[1] = 1
    event_id: UUID = Field(description="Stable per carrier message, so a redelivery is recognisable.")
    sender: str = Field(description="The mobile's number, E.164 with '+' where the carrier says it is international.")
    destination: str = Field(description="The number or short code it was sent to, as the carrier gave it.")
    text: str
    received_at: datetime
    provider_reference: str | None = None
    project: str | None = Field(None, description="The project that owns `destination`; None: nobody does.")
    store_body: bool = Field(
        False, description="Whether the ledger may keep `text`: the project's store_bodies; never when unrouted."
    )
    action: OptOutAction | None = Field(
        None,
        description="What its first word did to the sender on the project's opt-out list: "
        "opt_out (STOP …) added it, opt_in (START …) removed it; None: nothing.",
    )


# --- Webhooks: what a project's URL receives, and the webhook sender's own retries and
# dead letters (services/webhooks; operators use `rsms webhooks`). README "Webhooks".

WebhookEventType = Literal["message.sent", "message.delivered", "message.failed", "message.inbound"]
OUTBOUND_ONLY = frozenset({"message_id", "recipient"})
INBOUND_ONLY = frozenset({"from_", "to", "text"})


class WebhookEvent(Contract):
    """One event as the project's receiver gets it; `wire()` is its JSON form (camelCase).

    `id` is stable per source event and recipient, so an event delivered twice (delivery is
    at least once) is recognisable. Outbound events carry `messageId` and `recipient`,
    inbound ones `from`, `to` and `text`; null where unknown.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", alias_generator=to_camel, populate_by_name=True)

    id: UUID
    type: WebhookEventType
    project: str
    status: str = Field(description="sent, failed, dead_lettered; delivered, undelivered, …; received (inbound).")
    error_code: str | None = None
    occurred_at: datetime = Field(description="When it happened, as the provider or carrier says.")
    created_at: datetime = Field(description="When the gateway learned it.")
    test: bool = False
    message_id: UUID | None = None
    recipient: str | None = None
    from_: str | None = Field(None, alias="from")
    to: str | None = None
    text: str | None = None

    def wire(self) -> dict[str, object]:
        leave_out = OUTBOUND_ONLY if self.type == "message.inbound" else INBOUND_ONLY
        return self.model_dump(mode="json", by_alias=True, exclude=set(leave_out))


class WebhookDelivery(Contract):
    """A batch of one project's events on its way to the project's URL: what the webhook
    sender's delay queues hold between attempts. The same events, in the same request
    body, on every attempt."""

    schema_version: Literal[1] = 1
    delivery_id: UUID = Field(description="Stable across attempts: the X-RSMS-Delivery header.")
    project: str
    events: list[WebhookEvent]
    attempts: int = Field(0, description="Requests made so far (a postponement, slots busy, is not one).")
    last_error: str | None = Field(None, description="Why the last attempt failed; never the URL or the secret.")
    created_at: datetime
    replay: int = Field(0, description="Times an operator replayed it (`rsms webhooks replay`).")


WebhookDeadLetterReason = Literal["attempts_exhausted", "invalid_event"]


class WebhookDeadLetter(Contract):
    """A delivery the webhook sender gave up on, kept for an operator (`rsms webhooks`).

    A body that could not be read at all has no `delivery`: `body` keeps what arrived.
    """

    schema_version: Literal[1] = 1
    reason: WebhookDeadLetterReason
    detail: str
    dead_lettered_at: datetime
    project: str | None = None
    delivery: WebhookDelivery | None = None
    body: str | None = None
