"""The ledger's fast decoders against the pydantic contracts they mirror (no I/O)."""

from __future__ import annotations

import msgspec
import pytest

from services.ledger.rows import (
    EventRejected,
    InboundMessageBody,
    OutcomeEventBody,
    ReceiptEventBody,
    RecipientOutcomeBody,
    SmsJobBody,
    inbound_rows,
    outcome_rows,
    receipt_rows,
    request_rows,
)
from services.ledger.schema import (
    INBOUND_COLUMNS,
    INBOUND_TABLE,
    OUTCOMES_TABLE,
    RECEIPT_COLUMNS,
    RECEIPTS_TABLE,
    REQUEST_COLUMNS,
)
from shared.contracts import (
    InboundMessage,
    OutcomeBatch,
    OutcomeEvent,
    ReceiptEvent,
    RecipientOutcome,
    SmsJob,
    SmsJobBatch,
)
from tests.ledger.support import make_inbound, make_job, make_outcome, make_receipt, numbers


@pytest.mark.parametrize(
    ("mirror", "contract"),
    [
        (SmsJobBody, SmsJob),
        (OutcomeEventBody, OutcomeEvent),
        (RecipientOutcomeBody, RecipientOutcome),
        (ReceiptEventBody, ReceiptEvent),
        (InboundMessageBody, InboundMessage),
    ],
)
def test_every_contract_field_has_its_mirror(mirror, contract):
    assert set(mirror.__struct_fields__) == set(contract.model_fields)


def test_an_outcome_event_goes_to_clickhouse_as_json_counting_one_row_per_recipient():
    # ClickHouse fans the body out into rows (test_schema.py checks the rows it makes).
    event = make_outcome(make_job(recipients=numbers(3), segments=2), attempt=2, replay=1)
    # A duplicate key: msgspec keeps the last, ClickHouse would refuse the body (and its batch).
    body = event.model_dump_json().replace('"tag":', '"tag":"first","tag":', 1).encode()
    chunk = outcome_rows(body)
    assert (chunk.table, chunk.row_count, chunk.key) == (OUTCOMES_TABLE, 3, f"{event.event_id}:1:2")
    assert chunk.body is not None and chunk.body.count(b'"tag":') == 1
    assert OutcomeEvent.model_validate_json(chunk.body) == event


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
        make_outcome(make_job()).model_dump_json().replace('"schema_version":1', '"schema_version":9').encode(),
        # Values the outcome table's columns cannot hold would fail the whole batch.
        make_outcome(make_job()).model_dump_json().replace('"0.67"', '"NaN"').encode(),
        make_outcome(make_job()).model_dump_json().replace('"0.67"', '"1e12"').encode(),
        make_outcome(make_job()).model_dump_json().replace('"segments":1', '"segments":70000').encode(),
        make_outcome(make_job()).model_dump_json().replace('"occurred_at":"2', '"occurred_at":"9').encode(),
    ],
)
def test_a_body_the_ledger_cannot_record_is_rejected(body):
    with pytest.raises(EventRejected):
        outcome_rows(body)


def test_decoded_values_equal_the_contracts():
    event = make_outcome(make_job())
    mirrored = msgspec.json.decode(event.model_dump_json(), type=OutcomeEventBody)
    assert msgspec.structs.asdict(mirrored.outcomes[0]) == event.outcomes[0].model_dump()


def test_a_receipt_becomes_one_row_keyed_by_its_event_id():
    job = make_job()
    event = make_receipt(job, job.recipients[0], "undelivered", error_code="001")
    chunk = receipt_rows(event.model_dump_json().encode())
    assert (chunk.table, chunk.row_count, chunk.key) == (RECEIPTS_TABLE, 1, str(event.event_id))
    row = dict(zip(RECEIPT_COLUMNS, (c[0] for c in chunk.columns), strict=True))
    assert (row["status"], row["final"], row["error_code"]) == ("undelivered", True, "001")


@pytest.mark.parametrize(
    "replace",
    [
        ('"undelivered"', '"lost"'),
        ('"schema_version":1', '"schema_version":2'),
        ('"occurred_at":"2', '"occurred_at":"9'),
    ],
)
def test_a_receipt_the_ledger_cannot_record_is_rejected(replace):
    job = make_job()
    body = make_receipt(job, job.recipients[0], "undelivered").model_dump_json().replace(*replace)
    with pytest.raises(EventRejected):
        receipt_rows(body.encode())


@pytest.mark.parametrize(
    ("project", "store_body", "kept"),
    [("acme", True, "STOP please"), ("acme", False, ""), (None, True, ""), (None, False, "")],
)
def test_an_inbound_message_keeps_its_text_only_where_its_project_stores_bodies(project, store_body, kept):
    message = make_inbound(project, "STOP please", store_body=store_body, action="opt_out" if project else None)
    chunk = inbound_rows(message.model_dump_json().encode())
    assert (chunk.table, chunk.row_count, chunk.key) == (INBOUND_TABLE, 1, str(message.event_id))
    row = dict(zip(INBOUND_COLUMNS, (c[0] for c in chunk.columns), strict=True))
    assert (row["project"], row["text"], row["body_stored"]) == (project or "", kept, bool(kept))
    assert (row["sender"], row["destination"]) == (message.sender, message.destination)
    assert row["action"] == ("opt_out" if project else None)


@pytest.mark.parametrize(
    "replace",
    [
        ('"opt_out"', '"maybe"'),
        ('"schema_version":1', '"schema_version":2'),
        ('"received_at":"2', '"received_at":"9'),
    ],
)
def test_an_inbound_message_the_ledger_cannot_record_is_rejected(replace):
    body = make_inbound("acme", "STOP", action="opt_out").model_dump_json().replace(*replace)
    with pytest.raises(EventRejected):
        inbound_rows(body.encode())


def test_a_job_batch_becomes_the_rows_its_jobs_would_each_have_been():
    # Ingest's group commit: one SmsJobBatch on the wire, the same audit rows as one job each.
    jobs = [make_job(recipients=numbers(n + 1, start=40_000_000 + 10 * n), store_body=n % 2 == 0) for n in range(3)]
    batch = SmsJobBatch(jobs=jobs)
    chunk = request_rows(batch.model_dump_json().encode())
    alone = [request_rows(job.model_dump_json().encode()) for job in jobs]
    assert (chunk.table, chunk.row_count) == (alone[0].table, 3)
    assert chunk.columns == [[c for a in alone for c in a.columns[i]] for i in range(len(REQUEST_COLUMNS))]
    assert chunk.key.split("\n") == [a.key for a in alone]


def test_an_outcome_batch_goes_to_clickhouse_as_one_json_object_per_event():
    events = [make_outcome(make_job(recipients=numbers(n + 1)), attempt=n + 1) for n in range(3)]
    chunk = outcome_rows(OutcomeBatch(events=events).model_dump_json().encode())
    assert (chunk.table, chunk.row_count) == (OUTCOMES_TABLE, 6)
    assert chunk.key.split("\n") == [outcome_rows(e.model_dump_json().encode()).key for e in events]
    assert chunk.body is not None
    assert [OutcomeEvent.model_validate_json(line) for line in chunk.body.split(b"\n")] == events


@pytest.mark.parametrize(
    "body",
    [
        b'{"schema_version": 1, "jobs": []}',
        b'{"schema_version": 2, "jobs": [{}]}',
        b'{"schema_version": 1, "jobs": [{"message_id": "nope"}]}',
    ],
)
def test_a_job_batch_the_ledger_cannot_read_is_rejected(body):
    with pytest.raises(EventRejected):
        request_rows(body)


def test_an_outcome_batch_with_an_event_the_table_cannot_hold_is_rejected_whole():
    good = make_outcome(make_job())
    bad = good.model_dump_json().replace('"occurred_at":"20', '"occurred_at":"28', 1)
    body = b'{"schema_version":1,"events":[' + good.model_dump_json().encode() + b"," + bad.encode() + b"]}"
    with pytest.raises(EventRejected):
        outcome_rows(body)
    with pytest.raises(EventRejected):
        outcome_rows(b'{"schema_version":1,"events":[]}')
