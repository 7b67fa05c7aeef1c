"""Event bodies off the broker, turned into column-oriented rows for the ledger tables.

This is the ledger's hot path: an outcome event carries up to 1,000 recipients, and
building a pydantic object for each would cost more than inserting it. So the bodies are
validated with msgspec structs that mirror `shared.contracts` field for field
(`tests/ledger/test_rows.py` keeps the two in step).

A body may also be a batch (`SmsJobBatch`, `OutcomeBatch`: ingest's group commit and
the dispatcher's one outcome message per delivery); it becomes one chunk holding every
job's or event's rows, keyed by the same per-job/per-event keys, so deduplication does not
depend on how the events were grouped on the wire. A batch with one event the ledger
cannot record is rejected whole (it is kept intact for an operator in the dead-letter queue).

An outcome event is not turned into rows here at all: it goes to ClickHouse as JSON, into
`sms_outcome_events`, and a materialized view there fans it out into `sms_outcomes`
(`schema.py`). Building and serialising a dozen Python columns per recipient cost more than
the insert itself, held the GIL, and so kept the event loop from decoding the next batch
while one was written; ClickHouse does the fan-out in C++ without the GIL.

The JSON ClickHouse gets is the validated struct encoded again, not the body as it came:
one canonical spelling (no duplicate keys, UUIDs and times in one form) that ClickHouse is
known to read, because a body it refused would hold up every event in its batch. For the
same reason a value the outcome table's columns cannot hold is rejected (and dead-lettered)
here. Encoding again costs ~0.15 µs a recipient, a fraction of what the columns cost.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any, Literal, TypeVar
from uuid import UUID

import msgspec

from services.ledger.schema import INBOUND_TABLE, OUTCOMES_TABLE, RECEIPTS_TABLE, REQUESTS_TABLE

KNOWN_SCHEMA_VERSION = Literal[1]
# The widths of the outcome table's columns (UInt16, Decimal(18, 6), DateTime64): values
# outside them would make ClickHouse refuse the whole batch the event is in.
UInt16 = Annotated[int, msgspec.Meta(ge=0, le=65_535)]
COST_LIMIT = Decimal(10**12)
EARLIEST_YEAR, LATEST_YEAR = 1900, 2261


class RecipientOutcomeBody(msgspec.Struct, frozen=True, gc=False):
    recipient: str
    country: str
    status: Literal["sent", "retrying", "failed", "dead_lettered"]
    segments: UInt16
    cost: Decimal
    provider_reference: str | None = None
    error_code: str | None = None
    error_message: str | None = None


class OutcomeEventBody(msgspec.Struct, frozen=True, gc=False):
    event_id: UUID
    message_id: UUID
    project: str
    tag: str
    sender: str
    test: bool
    currency: str
    attempt: UInt16
    occurred_at: datetime
    outcomes: list[RecipientOutcomeBody]
    replay: UInt16 = 0
    schema_version: KNOWN_SCHEMA_VERSION = 1


class SmsJobBody(msgspec.Struct, frozen=True):
    message_id: UUID
    project: str
    key_id: str
    tag: str
    sender: str
    recipients: list[str]
    message: str
    encoding: Literal["GSM-7", "UCS-2"]
    segments: int
    prices: dict[str, Decimal]
    default_price: Decimal
    currency: str
    estimated_cost: Decimal
    test: bool
    store_body: bool
    accepted_at: datetime
    attempt: int = 1
    replay: int = 0
    schema_version: KNOWN_SCHEMA_VERSION = 1


class SmsJobBatchBody(msgspec.Struct, frozen=True):
    jobs: list[SmsJobBody]
    schema_version: KNOWN_SCHEMA_VERSION = 1


class OutcomeBatchBody(msgspec.Struct, frozen=True, gc=False):
    events: list[OutcomeEventBody]
    schema_version: KNOWN_SCHEMA_VERSION = 1


class _Envelope(msgspec.Struct):
    """Just enough of a body to tell a batch from a single event: only a batch has
    `jobs` (`SmsJobBatch`) or `events` (`OutcomeBatch`)."""

    jobs: msgspec.Raw = msgspec.Raw(b"")  # empty: absent
    events: msgspec.Raw = msgspec.Raw(b"")


class ReceiptEventBody(msgspec.Struct, frozen=True):
    event_id: UUID
    message_id: UUID
    project: str
    recipient: str
    status: Literal["delivered", "undelivered", "expired", "rejected", "deleted", "accepted", "unknown"]
    final: bool
    occurred_at: datetime
    received_at: datetime
    error_code: str | None = None
    provider_reference: str | None = None
    test: bool = False
    schema_version: KNOWN_SCHEMA_VERSION = 1


class InboundMessageBody(msgspec.Struct, frozen=True):
    event_id: UUID
    sender: str
    destination: str
    text: str
    received_at: datetime
    provider_reference: str | None = None
    project: str | None = None
    store_body: bool = False
    action: Literal["opt_out", "opt_in"] | None = None
    schema_version: KNOWN_SCHEMA_VERSION = 1


_Body = TypeVar(
    "_Body",
    OutcomeEventBody,
    SmsJobBody,
    ReceiptEventBody,
    InboundMessageBody,
    SmsJobBatchBody,
    OutcomeBatchBody,
    _Envelope,
)


class EventRejected(ValueError):
    """A body the ledger cannot record: malformed, or a schema version it does not know."""


@dataclass(slots=True)
class RowChunk:
    """Rows of one event for one table: column by column, or as the event's JSON body."""

    table: str
    key: str
    """Identifies the event, so a batch of the same events gets the same insert token."""
    row_count: int
    """Rows the event becomes in `table`."""
    columns: list[list[Any]] | None = None
    """The rows column by column, in the order of the table's columns."""
    body: bytes | None = None
    """Instead of columns: the validated event as JSON, which ClickHouse turns into the rows."""


_outcome_decoder = msgspec.json.Decoder(OutcomeEventBody)
_encoder = msgspec.json.Encoder()
_job_decoder = msgspec.json.Decoder(SmsJobBody)
_receipt_decoder = msgspec.json.Decoder(ReceiptEventBody)
_inbound_decoder = msgspec.json.Decoder(InboundMessageBody)
_job_batch_decoder = msgspec.json.Decoder(SmsJobBatchBody)
_outcome_batch_decoder = msgspec.json.Decoder(OutcomeBatchBody)
_envelope_decoder = msgspec.json.Decoder(_Envelope)


def _decoded(decoder: msgspec.json.Decoder[_Body], body: bytes, what: str) -> _Body:
    try:
        return decoder.decode(body)
    except msgspec.ValidationError as error:
        raise EventRejected(f"{what}: {error}") from error
    except msgspec.DecodeError as error:
        raise EventRejected(f"{what} is not JSON: {error}") from error


def outcome_rows(body: bytes) -> RowChunk:
    """An `OutcomeEvent`, or an `OutcomeBatch` of them: one chunk either way, its key naming
    every event (by the same per-event key), its body one JSON object per event."""
    if not _envelope_decoder_of(body).events:
        events = [_decoded(_outcome_decoder, body, "outcome event")]
    else:
        batch = _decoded(_outcome_batch_decoder, body, "outcome batch")
        if not batch.events:
            raise EventRejected("outcome batch: no events")
        events = batch.events
    for event in events:
        _check_fits_the_table(event)
    return RowChunk(
        table=OUTCOMES_TABLE,
        key="\n".join(f"{e.event_id}:{e.replay}:{e.attempt}" for e in events),
        row_count=sum(len(e.outcomes) for e in events),
        body=b"\n".join(_encoder.encode(e) for e in events),
    )


def _envelope_decoder_of(body: bytes) -> _Envelope:
    return _decoded(_envelope_decoder, body, "event")


def _check_fits_the_table(event: OutcomeEventBody) -> None:
    if not EARLIEST_YEAR <= event.occurred_at.year <= LATEST_YEAR:
        raise EventRejected(f"outcome event: occurred_at {event.occurred_at} is out of range")
    try:
        # One cheap pass (~0.06 µs a row): NaN raises, infinities and huge amounts fail.
        fits = all(-COST_LIMIT < o.cost < COST_LIMIT for o in event.outcomes)
    except InvalidOperation:
        fits = False
    if not fits:
        raise EventRejected("outcome event: a cost is not a finite amount below 10^12")


def request_rows(body: bytes) -> RowChunk:
    """An `SmsJob`, or an `SmsJobBatch` of them (ingest's group commit): one row per job."""
    if not _envelope_decoder_of(body).jobs:
        jobs = [_decoded(_job_decoder, body, "accepted job")]
    else:
        jobs = _decoded(_job_batch_decoder, body, "accepted job batch").jobs
        if not jobs:
            raise EventRejected("accepted job batch: no jobs")
    counts = [len(job.recipients) for job in jobs]
    return RowChunk(
        table=REQUESTS_TABLE,
        key="\n".join(f"{job.message_id}:{job.attempt}" for job in jobs),
        row_count=len(jobs),
        columns=[
            [job.message_id for job in jobs],
            [job.project for job in jobs],
            [job.key_id for job in jobs],
            [job.tag for job in jobs],
            [job.sender for job in jobs],
            [job.recipients for job in jobs],
            counts,
            [job.message if job.store_body else "" for job in jobs],
            [job.store_body for job in jobs],
            [job.encoding for job in jobs],
            [job.segments for job in jobs],
            [job.segments * count for job, count in zip(jobs, counts, strict=True)],
            [job.prices for job in jobs],
            [job.default_price for job in jobs],
            [job.currency for job in jobs],
            [job.estimated_cost for job in jobs],
            [job.test for job in jobs],
            [job.accepted_at for job in jobs],
        ],
    )


def receipt_rows(body: bytes) -> RowChunk:
    event = _decoded(_receipt_decoder, body, "receipt event")
    for name in ("occurred_at", "received_at"):
        moment: datetime = getattr(event, name)
        if not EARLIEST_YEAR <= moment.year <= LATEST_YEAR:
            raise EventRejected(f"receipt event: {name} {moment} is out of range")
    return RowChunk(
        table=RECEIPTS_TABLE,
        key=str(event.event_id),
        row_count=1,
        columns=[
            [event.project],
            [event.message_id],
            [event.recipient],
            [event.status],
            [event.final],
            [event.error_code],
            [event.provider_reference],
            [event.test],
            [event.event_id],
            [event.occurred_at],
            [event.received_at],
        ],
    )


def inbound_rows(body: bytes) -> RowChunk:
    """The text is kept only where the project stores bodies; an unrouted message's never."""
    message = _decoded(_inbound_decoder, body, "inbound message")
    if not EARLIEST_YEAR <= message.received_at.year <= LATEST_YEAR:
        raise EventRejected(f"inbound message: received_at {message.received_at} is out of range")
    keep_text = message.store_body and message.project is not None
    return RowChunk(
        table=INBOUND_TABLE,
        key=str(message.event_id),
        row_count=1,
        columns=[
            [message.project or ""],
            [message.event_id],
            [message.sender],
            [message.destination],
            [message.text if keep_text else ""],
            [keep_text],
            [message.action],
            [message.provider_reference],
            [message.received_at],
        ],
    )
