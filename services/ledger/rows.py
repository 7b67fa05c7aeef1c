"""Event bodies off the broker, turned into column-oriented rows for the ledger tables.

This is the ledger's hot path: an outcome event carries up to 1,000 recipients, and
building a pydantic object for each would cost more than inserting it. So the bodies are
decoded with msgspec into structs that mirror `shared.contracts` field for field
(`tests/ledger/test_rows.py` keeps the two in step) and go straight into columns.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any, Literal
from uuid import UUID

import msgspec

from services.ledger.schema import OUTCOMES_TABLE, REQUESTS_TABLE

KNOWN_SCHEMA_VERSION = Literal[1]


class RecipientOutcomeBody(msgspec.Struct, frozen=True, gc=False):
    recipient: str
    country: str
    status: Literal["sent", "retrying", "failed", "dead_lettered"]
    segments: int
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
    attempt: int
    occurred_at: datetime
    outcomes: list[RecipientOutcomeBody]
    replay: int = 0
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


class EventRejected(ValueError):
    """A body the ledger cannot record: malformed, or a schema version it does not know."""


@dataclass(slots=True)
class RowChunk:
    """Rows of one event for one table, column by column (the order of the table's columns)."""

    table: str
    key: str
    """Identifies the event, so a batch of the same events gets the same insert token."""
    row_count: int
    columns: list[list[Any]]


_outcome_decoder = msgspec.json.Decoder(OutcomeEventBody)
_job_decoder = msgspec.json.Decoder(SmsJobBody)


def outcome_rows(body: bytes) -> RowChunk:
    try:
        event = _outcome_decoder.decode(body)
    except msgspec.ValidationError as error:
        raise EventRejected(f"outcome event: {error}") from error
    except msgspec.DecodeError as error:
        raise EventRejected(f"outcome event is not JSON: {error}") from error
    outcomes = event.outcomes
    n = len(outcomes)
    return RowChunk(
        table=OUTCOMES_TABLE,
        key=f"{event.event_id}:{event.replay}:{event.attempt}",
        row_count=n,
        columns=[
            [event.project] * n,
            [event.message_id] * n,
            [o.recipient for o in outcomes],
            [event.replay] * n,
            [event.attempt] * n,
            [o.country for o in outcomes],
            [o.status for o in outcomes],
            [o.segments for o in outcomes],
            [o.cost for o in outcomes],
            [event.currency] * n,
            [event.tag] * n,
            [event.sender] * n,
            [event.test] * n,
            [o.provider_reference for o in outcomes],
            [o.error_code for o in outcomes],
            [o.error_message for o in outcomes],
            [event.event_id] * n,
            [event.occurred_at] * n,
        ],
    )


def request_rows(body: bytes) -> RowChunk:
    try:
        job = _job_decoder.decode(body)
    except msgspec.ValidationError as error:
        raise EventRejected(f"accepted job: {error}") from error
    except msgspec.DecodeError as error:
        raise EventRejected(f"accepted job is not JSON: {error}") from error
    recipient_count = len(job.recipients)
    return RowChunk(
        table=REQUESTS_TABLE,
        key=f"{job.message_id}:{job.attempt}",
        row_count=1,
        columns=[
            [job.message_id],
            [job.project],
            [job.key_id],
            [job.tag],
            [job.sender],
            [job.recipients],
            [recipient_count],
            [job.message if job.store_body else ""],
            [job.store_body],
            [job.encoding],
            [job.segments],
            [job.segments * recipient_count],
            [job.prices],
            [job.default_price],
            [job.currency],
            [job.estimated_cost],
            [job.test],
            [job.accepted_at],
        ],
    )
