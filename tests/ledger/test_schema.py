"""The schema the ledger creates: versioned, idempotent, partitioned, with a 12-month TTL;
and the analysts' example queries in QUERIES.md run against it."""

from __future__ import annotations

import re
from datetime import UTC
from pathlib import Path

from services.ledger.clickhouse import LedgerWriter, open_client
from services.ledger.rows import inbound_rows, outcome_rows, request_rows
from services.ledger.schema import (
    INBOUND_TABLE,
    MIGRATIONS_TABLE,
    OUTCOME_COLUMNS,
    OUTCOMES_TABLE,
    RECEIPTS_TABLE,
    REQUESTS_TABLE,
    SCHEMA_MIGRATIONS,
)
from tests.ledger.support import make_inbound, make_job, make_outcome, numbers

QUERIES_MD = Path(__file__).resolve().parents[2] / "services" / "ledger" / "QUERIES.md"


def test_migrations_are_recorded_and_applying_them_again_changes_nothing(clickhouse):
    writer = LedgerWriter(open_client(clickhouse.dsn), clickhouse.database)
    assert writer.migrate() == [m.version for m in SCHEMA_MIGRATIONS]
    assert writer.migrate() == []
    client = clickhouse.client()
    versions = client.query(
        f"SELECT version FROM {clickhouse.database}.{MIGRATIONS_TABLE} FINAL ORDER BY version"
    ).result_rows
    assert [v for (v,) in versions] == [m.version for m in SCHEMA_MIGRATIONS]


def test_tables_are_partitioned_by_month_with_a_12_month_ttl(clickhouse):
    LedgerWriter(open_client(clickhouse.dsn), clickhouse.database).migrate()
    client = clickhouse.client()
    tables = dict(
        client.query(
            "SELECT name, create_table_query FROM system.tables WHERE database = {db:String}",
            parameters={"db": clickhouse.database},
        ).result_rows
    )
    for table, time_column in ((REQUESTS_TABLE, "accepted_at"), (OUTCOMES_TABLE, "occurred_at")):
        ddl = tables[table]
        assert "ReplacingMergeTree" in ddl
        assert f"PARTITION BY toYYYYMM({time_column})" in ddl
        assert f"TTL toDateTime({time_column}) + toIntervalMonth(12)" in ddl
        assert f"ORDER BY (project, toDate({time_column}), message_id" in ddl
    receipts = tables[RECEIPTS_TABLE]
    assert "ReplacingMergeTree" in receipts and "PARTITION BY toYYYYMM(received_at)" in receipts
    assert "TTL toDateTime(received_at) + toIntervalMonth(12)" in receipts
    assert "ORDER BY (project, message_id, recipient, status)" in receipts
    inbound = tables[INBOUND_TABLE]
    assert "ReplacingMergeTree" in inbound and "PARTITION BY toYYYYMM(received_at)" in inbound
    assert "TTL toDateTime(received_at) + toIntervalMonth(12)" in inbound
    assert "ORDER BY (project, toDate(received_at), event_id)" in inbound
    keys = dict(
        client.query(
            "SELECT name, partition_key FROM system.tables WHERE database = {db:String}",
            parameters={"db": clickhouse.database},
        ).result_rows
    )
    assert keys[OUTCOMES_TABLE] == "toYYYYMM(occurred_at)"


def test_clickhouse_fans_an_outcome_event_out_into_the_rows_of_the_contract(clickhouse):
    writer = LedgerWriter(open_client(clickhouse.dsn), clickhouse.database)
    writer.migrate()
    job = make_job(recipients=numbers(2), segments=2)
    sent = make_outcome(job, attempt=2, replay=1)
    failed = make_outcome(job, attempt=3, replay=1, status="failed")
    # An optional field left out, and one the ledger does not know, as a newer producer might.
    body = failed.model_dump_json().replace('"error_message":null,', '"channel":{"a":[1]},')
    writer.write_batch([outcome_rows(sent.model_dump_json().encode()), outcome_rows(body.encode())])
    columns = ", ".join(OUTCOME_COLUMNS)
    rows = (
        clickhouse.client()
        .query(f"SELECT {columns} FROM {clickhouse.database}.{OUTCOMES_TABLE} ORDER BY attempt, recipient")
        .result_rows
    )
    expected = [
        (
            event.project,
            event.message_id,
            o.recipient,
            event.replay,
            event.attempt,
            o.country,
            o.status,
            o.segments,
            o.cost,
            event.currency,
            event.tag,
            event.sender,
            event.test,
            o.provider_reference,
            o.error_code,
            o.error_message,
            event.event_id,
            event.occurred_at.replace(microsecond=event.occurred_at.microsecond // 1000 * 1000),
        )
        for event in (sent, failed)
        for o in event.outcomes
    ]
    assert [(*row[:-1], row[-1].replace(tzinfo=UTC)) for row in rows] == expected


def test_the_analysts_example_queries_run_and_count_a_duplicate_once(clickhouse):
    writer = LedgerWriter(open_client(clickhouse.dsn), clickhouse.database)
    writer.migrate()
    job = make_job(recipients=numbers(3))
    event = outcome_rows(make_outcome(job).model_dump_json().encode())
    writer.write_batch([request_rows(job.model_dump_json().encode()), event])
    writer.write_batch([event, request_rows(make_job().model_dump_json().encode())])  # a redelivery
    stop = inbound_rows(make_inbound("acme", "STOP", action="opt_out").model_dump_json().encode())
    writer.write_batch([stop, inbound_rows(make_inbound(None, "hi").model_dump_json().encode())])
    writer.write_batch([stop])  # a redelivery

    queries = re.findall(r"```sql\n(.*?)```", QUERIES_MD.read_text(), re.DOTALL)
    assert len(queries) == 6
    client = clickhouse.client()
    results = [client.query(sql.replace("rsms.", f"{clickhouse.database}.")).result_rows for sql in queries]
    invoice, failures, per_tag, audit, inbound, _ = results
    assert sorted(inbound) == [("", 1, 0, 0, 1), ("acme", 1, 1, 0, 1)]
    assert [(r[0], r[3], r[4], r[5]) for r in invoice] == [("acme", 1, 3, 3)]
    assert [(r[0], r[1], r[3]) for r in failures] == [("NO", 3, 0)]
    assert [(r[1], r[2], r[3]) for r in per_tag] == [(job.tag, 3, 3)]
    assert len(audit) == 2


def test_batches_land_as_the_rows_of_their_jobs_and_events_and_a_redelivery_counts_once(clickhouse):
    from shared.contracts import OutcomeBatch, SmsJobBatch

    writer = LedgerWriter(open_client(clickhouse.dsn), clickhouse.database)
    writer.migrate()
    jobs = [make_job(recipients=numbers(2, start=40_000_000 + 10 * n)) for n in range(3)]
    requests = request_rows(SmsJobBatch(jobs=jobs).model_dump_json().encode())
    outcomes = outcome_rows(OutcomeBatch(events=[make_outcome(job) for job in jobs]).model_dump_json().encode())
    writer.write_batch([requests, outcomes])
    writer.write_batch([requests, outcomes])  # the same deliveries again
    client = clickhouse.client()
    db = clickhouse.database
    assert client.query(f"SELECT count() FROM {db}.{REQUESTS_TABLE} FINAL").result_rows == [(3,)]
    rows = client.query(f"SELECT message_id, recipient FROM {db}.{OUTCOMES_TABLE} FINAL").result_rows
    assert sorted((str(m), r) for m, r in rows) == sorted(
        (str(job.message_id), r) for job in jobs for r in job.recipients
    )
