"""The ledger's DDL on one server and on a ClickHouse cluster (`RSMS_CLICKHOUSE_CLUSTER`),
and which tables its reads and inserts address in each mode.

Unit tests: the DDL is a plain function of (migration, database, cluster), and the routing
is checked with a client that records the statements it is given (no server here; the
statements run for real on chDB in test_schema.py and, where Docker runs, on a ClickHouse
server and a 2-replica cluster in test_clickhouse_server.py / tests/cluster).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import uuid4

import pytest

from services.ledger.clickhouse import LedgerWriter
from services.ledger.reads import LedgerReader
from services.ledger.rows import inbound_rows, outcome_rows, receipt_rows, request_rows
from services.ledger.schema import (
    INBOUND_TABLE,
    MIGRATIONS_TABLE,
    OUTCOME_EVENTS_TABLE,
    OUTCOME_ROWS_VIEW,
    OUTCOMES_TABLE,
    RECEIPTS_TABLE,
    REQUESTS_TABLE,
    SCHEMA_MIGRATIONS,
    apply_migrations,
    insert_settings,
    migration_statements,
    migration_token,
    setup_statements,
)
from shared.contracts import UsageQuery
from tests.ledger.support import make_inbound, make_job, make_outcome, make_receipt, numbers

DB = "rsms"
CLUSTER = "rsms"
STORED = {
    REQUESTS_TABLE: ("accepted_at", "ORDER BY (project, toDate(accepted_at), message_id)", "message_id"),
    OUTCOMES_TABLE: (
        "occurred_at",
        "ORDER BY (project, toDate(occurred_at), message_id, recipient, replay, attempt)",
        "message_id",
    ),
    RECEIPTS_TABLE: ("received_at", "ORDER BY (project, message_id, recipient, status)", "message_id"),
    INBOUND_TABLE: ("received_at", "ORDER BY (project, toDate(received_at), event_id)", "event_id"),
}
"""Each ReplacingMergeTree table: its time column, sorting key and shard column."""


def all_statements(cluster: str | None) -> list[str]:
    return [s for m in SCHEMA_MIGRATIONS for s in migration_statements(m, DB, cluster)]


def created(cluster: str | None) -> dict[str, str]:
    """Table (or view) name → its CREATE statement."""
    found: dict[str, str] = {}
    for statement in all_statements(cluster) + setup_statements(DB, cluster):
        match = re.match(r"CREATE (?:TABLE|MATERIALIZED VIEW|DATABASE) IF NOT EXISTS (?:rsms\.)?(\w+)", statement)
        assert match, statement
        assert match[1] not in found, f"{match[1]} created twice"
        found[match[1]] = statement
    return found


def engine_of(statement: str) -> str:
    match = re.search(r"^ENGINE = (\w+)", statement, re.MULTILINE)
    return match[1] if match else "view"


def test_single_server_ddl_is_the_schema_as_before():
    tables = created(None)
    assert set(tables) == {DB, MIGRATIONS_TABLE, *STORED, OUTCOME_EVENTS_TABLE, OUTCOME_ROWS_VIEW}
    for statement in all_statements(None) + setup_statements(DB, None):
        assert "ON CLUSTER" not in statement and "Replicated" not in statement and "Distributed" not in statement
    for table, (time_column, order_by, _) in STORED.items():
        ddl = tables[table]
        assert engine_of(ddl) == "ReplacingMergeTree"
        assert f"PARTITION BY toYYYYMM({time_column})" in ddl
        assert order_by in ddl
        assert f"TTL toDateTime({time_column}) + INTERVAL 12 MONTH" in ddl
        assert "SETTINGS non_replicated_deduplication_window = 10000, ttl_only_drop_parts = 1" in ddl
    assert engine_of(tables[OUTCOME_EVENTS_TABLE]) == "Null"
    view = tables[OUTCOME_ROWS_VIEW]
    assert f"TO {DB}.{OUTCOMES_TABLE}\n" in view and f"FROM {DB}.{OUTCOME_EVENTS_TABLE}\n" in view
    assert engine_of(tables[MIGRATIONS_TABLE]) == "ReplacingMergeTree"


def test_cluster_ddl_replicates_each_table_and_distributes_it_by_message():
    tables = created(CLUSTER)
    stored = {f"{name}_local" for name in (*STORED, OUTCOME_EVENTS_TABLE)}
    assert set(tables) == {DB, MIGRATIONS_TABLE, *STORED, OUTCOME_EVENTS_TABLE, OUTCOME_ROWS_VIEW, *stored}
    for statement in all_statements(CLUSTER) + setup_statements(DB, CLUSTER):
        assert f" ON CLUSTER '{CLUSTER}'" in statement.splitlines()[0]
    for table, (time_column, order_by, shard_column) in STORED.items():
        local = tables[f"{table}_local"]
        assert (
            f"ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{{shard}}/{DB}/{table}_local', '{{replica}}')"
            in local
        )
        # Partitioning, sorting key, TTL and the index stay on the table that stores rows.
        assert f"PARTITION BY toYYYYMM({time_column})" in local
        assert order_by in local
        assert f"TTL toDateTime({time_column}) + INTERVAL 12 MONTH" in local
        assert "SETTINGS replicated_deduplication_window = 10000, ttl_only_drop_parts = 1" in local
        assert ("INDEX message_id_bloom" in local) == (table != INBOUND_TABLE)
        distributed = tables[table]
        assert f"ENGINE = Distributed('{CLUSTER}', '{DB}', '{table}_local', cityHash64({shard_column}))" in distributed
        for clause in ("PARTITION BY", "ORDER BY", "TTL", "INDEX", "SETTINGS"):
            assert clause not in distributed
        assert _columns(distributed) == _columns(local)
    # Outcome events: Null on each node, Distributed by message; the view works node by node.
    assert engine_of(tables[f"{OUTCOME_EVENTS_TABLE}_local"]) == "Null"
    assert (
        f"ENGINE = Distributed('{CLUSTER}', '{DB}', '{OUTCOME_EVENTS_TABLE}_local', cityHash64(message_id))"
        in tables[OUTCOME_EVENTS_TABLE]
    )
    view = tables[OUTCOME_ROWS_VIEW]
    assert f"TO {DB}.{OUTCOMES_TABLE}_local\n" in view and f"FROM {DB}.{OUTCOME_EVENTS_TABLE}_local\n" in view
    # The record of migrations: one Keeper path for the whole cluster, every node a replica.
    migrations_path = f"/clickhouse/tables/all/{DB}/{MIGRATIONS_TABLE}"
    assert (
        f"ENGINE = ReplicatedReplacingMergeTree('{migrations_path}', '{{shard}}-{{replica}}')"
        in tables[MIGRATIONS_TABLE]
    )
    assert tables[DB] == f"CREATE DATABASE IF NOT EXISTS {DB} ON CLUSTER '{CLUSTER}'"


def test_cluster_ddl_names_the_cluster_and_database_it_is_given():
    statements = [s for m in SCHEMA_MIGRATIONS for s in migration_statements(m, "ledger_b", "prod")]
    assert all(" ON CLUSTER 'prod'" in s for s in statements)
    assert "Distributed('prod', 'ledger_b', 'sms_outcomes_local', cityHash64(message_id))" in "\n".join(statements)
    assert "'/clickhouse/tables/{shard}/ledger_b/sms_outcomes_local'" in "\n".join(statements)
    assert not any("rsms" in s for s in statements)


def _columns(statement: str) -> list[str]:
    body = statement[statement.index("(\n") + 2 : statement.index("\n)\nENGINE")]
    return [line.rstrip(",") for line in body.splitlines() if not line.startswith("INDEX ")]


class RecordingClient:
    """Stands in for ClickHouse in these unit tests: records what the ledger sends."""

    def __init__(self, recorded_versions: set[int] | None = None) -> None:
        self.recorded = recorded_versions
        self.commands: list[str] = []
        self.queries: list[str] = []
        self.inserts: list[tuple[str, dict[str, Any]]] = []

    def command(self, sql: str, parameters: dict[str, Any] | None = None) -> Any:
        if "system.tables" in sql:
            return 0 if self.recorded is None else 1
        self.commands.append(sql)
        return 1

    def query(self, sql: str, parameters: dict[str, Any] | None = None) -> Any:
        self.queries.append(sql)
        rows = [(v,) for v in sorted(self.recorded or ())] if MIGRATIONS_TABLE in sql else []
        return type("Result", (), {"result_rows": rows})()

    def insert(self, table: str, data: Any, **kwargs: Any) -> None:
        self.inserts.append((table, kwargs.get("settings", {})))

    def raw_insert(self, table: str, **kwargs: Any) -> None:
        self.inserts.append((table, kwargs.get("settings", {})))


@pytest.mark.parametrize("cluster", [None, CLUSTER])
def test_reads_and_inserts_address_the_tables_that_see_every_row(cluster):
    """One server: the ReplacingMergeTree tables (and the Null events table). A cluster: the
    Distributed tables (never a node's `_local` share), inserted into synchronously, with
    the batch's deduplication token."""
    engines = {name: engine_of(ddl) for name, ddl in created(cluster).items()}
    client = RecordingClient()
    writer = LedgerWriter(client, DB, cluster)
    job = make_job(recipients=numbers(2))
    writer.write_batch(
        [
            request_rows(job.model_dump_json().encode()),
            outcome_rows(make_outcome(job).model_dump_json().encode()),
            receipt_rows(make_receipt(job, job.recipients[0], "delivered").model_dump_json().encode()),
            inbound_rows(make_inbound("acme", "hi").model_dump_json().encode()),
        ]
    )
    reader = LedgerReader(client, DB)
    reader.message_status("acme", uuid4())
    now = datetime.now(UTC)
    reader.usage(UsageQuery(project="acme", date_from=now - timedelta(days=1), date_to=now, group_by="day"))
    reader.traffic_per_minute(now - timedelta(minutes=5))

    inserted = [table.removeprefix(f"{DB}.") for table, _ in client.inserts]
    assert sorted(inserted) == sorted([REQUESTS_TABLE, OUTCOME_EVENTS_TABLE, RECEIPTS_TABLE, INBOUND_TABLE])
    read = {name for sql in client.queries for name in re.findall(rf"FROM {DB}\.(\w+)", sql)}
    assert read == {REQUESTS_TABLE, OUTCOMES_TABLE, RECEIPTS_TABLE}
    for table in [*inserted, *read]:
        expected = "Distributed" if cluster else ("Null" if table == OUTCOME_EVENTS_TABLE else "ReplacingMergeTree")
        assert engines[table] == expected, table
    for _, settings in client.inserts:
        assert settings["insert_deduplication_token"]
        assert settings.get("insert_distributed_sync") == (1 if cluster else None)
    assert insert_settings(None) == {}


def test_migrations_on_a_cluster_go_on_cluster_and_are_recorded_once_per_version():
    client = RecordingClient()
    assert apply_migrations(client, DB, CLUSTER) == [m.version for m in SCHEMA_MIGRATIONS]
    assert client.commands[:2] == setup_statements(DB, CLUSTER)
    assert client.commands[2:] == all_statements(CLUSTER)
    assert [(table, settings) for table, settings in client.inserts] == [
        (f"{DB}.{MIGRATIONS_TABLE}", {"insert_deduplication_token": migration_token(m.version)})
        for m in SCHEMA_MIGRATIONS
    ]
    # The same token for the same version whoever records it: a replicated table keeps one.
    assert migration_token(3) == migration_token(3) != migration_token(4)


def test_a_ledger_finding_every_migration_recorded_sends_no_ddl():
    """So it starts while a node of the cluster is down (ON CLUSTER DDL would wait for it)."""
    client = RecordingClient({m.version for m in SCHEMA_MIGRATIONS})
    assert apply_migrations(client, DB, CLUSTER) == []
    assert client.commands == [] and client.inserts == []


def test_only_the_migrations_not_recorded_are_applied():
    client = RecordingClient({1, 2})
    assert apply_migrations(client, DB, CLUSTER) == [3, 4]
    pending = [s for m in SCHEMA_MIGRATIONS[2:] for s in migration_statements(m, DB, CLUSTER)]
    assert client.commands == setup_statements(DB, CLUSTER) + pending
