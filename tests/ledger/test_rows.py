"""The ledger's fast decoders against the pydantic contracts they mirror (no I/O)."""

from __future__ import annotations

import msgspec
import pytest

from services.ledger.rows import (
    EventRejected,
    OutcomeEventBody,
    RecipientOutcomeBody,
    SmsJobBody,
    outcome_rows,
    request_rows,
)
from services.ledger.schema import OUTCOME_COLUMNS, REQUEST_COLUMNS
from shared.contracts import OutcomeEvent, RecipientOutcome, SmsJob
from tests.ledger.support import make_job, make_outcome, numbers


@pytest.mark.parametrize(
    ("mirror", "contract"),
    [
        (SmsJobBody, SmsJob),
        (OutcomeEventBody, OutcomeEvent),
        (RecipientOutcomeBody, RecipientOutcome),
    ],
)
def test_every_contract_field_has_its_mirror(mirror, contract):
    assert set(mirror.__struct_fields__) == set(contract.model_fields)


def test_an_outcome_event_becomes_one_row_per_recipient_in_column_order():
    job = make_job(recipients=numbers(3), segments=2)
    event = make_outcome(job)
    chunk = outcome_rows(event.model_dump_json().encode())
    assert chunk.row_count == 3 and len(chunk.columns) == len(OUTCOME_COLUMNS)
    rows = [
        dict(zip(OUTCOME_COLUMNS, values, strict=True))
        for values in zip(*chunk.columns, strict=True)
    ]
    assert [r["recipient"] for r in rows] == job.recipients
    assert {
        (r["project"], r["message_id"], r["attempt"], r["status"], r["segments"]) for r in rows
    } == {("acme", job.message_id, 1, "sent", 2)}
    assert [r["cost"] for r in rows] == [o.cost for o in event.outcomes]
    assert rows[0]["occurred_at"] == event.occurred_at


def test_a_job_becomes_one_audit_row_without_the_body_when_the_project_opted_out():
    job = make_job(store_body=False)
    chunk = request_rows(job.model_dump_json().encode())
    row = dict(zip(REQUEST_COLUMNS, (c[0] for c in chunk.columns), strict=True))
    assert row["message"] == "" and row["body_stored"] is False
    assert row["recipient_count"] == 3 and row["recipients"] == job.recipients


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b'{"schema_version": 2}',
        make_outcome(make_job()).model_dump_json().replace('"sent"', '"delivered"').encode(),
        make_outcome(make_job())
        .model_dump_json()
        .replace('"schema_version":1', '"schema_version":9')
        .encode(),
    ],
)
def test_a_body_the_ledger_cannot_record_is_rejected(body):
    with pytest.raises(EventRejected):
        outcome_rows(body)


def test_decoded_values_equal_the_contracts():
    event = make_outcome(make_job())
    mirrored = msgspec.json.decode(event.model_dump_json(), type=OutcomeEventBody)
    assert msgspec.structs.asdict(mirrored.outcomes[0]) == event.outcomes[0].model_dump()
