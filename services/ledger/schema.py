"""The ledger's ClickHouse tables and the versioned migrations that create them.

`sms_requests` is the audit trail: one row per accepted send request. `sms_outcomes` holds
one row per recipient per dispatch attempt; `sms_receipts` one row per recipient per
delivery status a carrier reported; `sms_inbound` one row per inbound SMS. All are
ReplacingMergeTree tables keyed so a redelivered event collapses into the row it repeats;
the reads in `reads.py` deduplicate on their own as well, so they count correctly before
any merge has happened.

They are partitioned by month and ordered by (project, day, message id, ...): billing reads
one project over a date range, status reads one project's message (helped by a bloom
filter on `message_id`). Rows expire after 12 months, the contract's retention promise;
with monthly partitions TTL drops whole parts.

Outcome events arrive as JSON bodies of up to 1,000 recipients. They are inserted as they
are into `sms_outcome_events` (engine Null: it keeps nothing), and the materialized view
`sms_outcome_rows` turns each into one `sms_outcomes` row per recipient (ARRAY JOIN). An
insert deduplication token given to that insert applies to the rows the view writes
(`deduplicate_blocks_in_dependent_materialized_views`), so a retried batch lands once.

A migration is a version and the tables and views it adds, written once for a single
server; `migration_statements(migration, database, cluster)` is its DDL either there or on
a ClickHouse cluster (`RSMS_CLICKHOUSE_CLUSTER`): there each table becomes a replicated
table per shard (`<name>_local`, `Replicated…MergeTree` with the `{shard}`/`{replica}`
macros) and a Distributed table under the table's own name, sharded by
`cityHash64(message_id)` (inbound: `event_id`), all created `ON CLUSTER`. Applied versions
are recorded in `schema_migrations` (on a cluster: replicated to every node). Statements
are idempotent (`IF NOT EXISTS`), so ledgers starting at once cannot break each other.
Never edit an applied migration: append a new one (an ALTER must alter both the
`_local` table and the Distributed one on a cluster).
"""

from __future__ import annotations

from dataclasses import dataclass
from textwrap import dedent
from typing import Any

REQUESTS_TABLE = "sms_requests"
OUTCOMES_TABLE = "sms_outcomes"
OUTCOME_EVENTS_TABLE = "sms_outcome_events"
OUTCOME_ROWS_VIEW = "sms_outcome_rows"
RECEIPTS_TABLE = "sms_receipts"
INBOUND_TABLE = "sms_inbound"
MIGRATIONS_TABLE = "schema_migrations"
LOCAL_SUFFIX = "_local"
DEDUPLICATION_WINDOW = 10_000

REQUEST_COLUMNS: tuple[str, ...] = (
    "message_id",
    "project",
    "key_id",
    "tag",
    "sender",
    "recipients",
    "recipient_count",
    "message",
    "body_stored",
    "encoding",
    "segments",
    "total_segments",
    "prices",
    "default_price",
    "currency",
    "estimated_cost",
    "test",
    "accepted_at",
)
OUTCOME_COLUMNS: tuple[str, ...] = (
    "project",
    "message_id",
    "recipient",
    "replay",
    "attempt",
    "country",
    "status",
    "segments",
    "cost",
    "currency",
    "tag",
    "sender",
    "test",
    "provider_reference",
    "error_code",
    "error_message",
    "event_id",
    "occurred_at",
)

RECEIPT_COLUMNS: tuple[str, ...] = (
    "project",
    "message_id",
    "recipient",
    "status",
    "final",
    "error_code",
    "provider_reference",
    "test",
    "event_id",
    "occurred_at",
    "received_at",
)

INBOUND_COLUMNS: tuple[str, ...] = (
    "project",
    "event_id",
    "sender",
    "destination",
    "text",
    "body_stored",
    "action",
    "provider_reference",
    "received_at",
)


@dataclass(frozen=True)
class Table:
    """A table as the single-server schema defines it; `table_statements` derives the
    cluster's replicated and Distributed tables from it."""

    name: str
    columns: str
    engine: str
    clauses: str = ""
    """What follows ENGINE, but for SETTINGS: partitioning, sorting key, TTL, comment."""
    settings: tuple[str, ...] = ()
    """MergeTree settings besides the deduplication window, which `table_statements` adds."""
    indexes: tuple[str, ...] = ()
    """Data-skipping indexes: the stored table's only (a Distributed table takes none)."""
    shard_by: str = "message_id"
    """The column whose hash places a row on a shard: every row (and every duplicate) of one
    message lands on one shard, so FINAL, merges and per-message reads see them together."""


@dataclass(frozen=True)
class RowsView:
    """A materialized view writing the rows it selects from `source` into `target`."""

    name: str
    source: str
    target: str
    select: str
    """The SELECT, with `{source}` where the source table goes."""


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    steps: tuple[Table | RowsView, ...]


SCHEMA_MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "requests and recipient outcomes",
        (
            Table(
                REQUESTS_TABLE,
                """
                message_id UUID,
                project LowCardinality(String),
                key_id String,
                tag LowCardinality(String),
                sender String,
                recipients Array(String),
                recipient_count UInt32,
                message String COMMENT 'empty when the project opted out of storing bodies',
                body_stored Bool,
                encoding LowCardinality(String),
                segments UInt16 COMMENT 'per recipient',
                total_segments UInt32,
                prices Map(LowCardinality(String), Decimal(18, 6)) COMMENT 'per segment',
                default_price Decimal(18, 6),
                currency LowCardinality(String),
                estimated_cost Decimal(18, 6),
                test Bool,
                accepted_at DateTime64(3, 'UTC'),
                recorded_at DateTime64(3, 'UTC') DEFAULT now64(3)
                """,
                "ReplacingMergeTree",
                """
                PARTITION BY toYYYYMM(accepted_at)
                ORDER BY (project, toDate(accepted_at), message_id)
                TTL toDateTime(accepted_at) + INTERVAL 12 MONTH
                """,
                settings=("ttl_only_drop_parts = 1",),
                indexes=("INDEX message_id_bloom message_id TYPE bloom_filter GRANULARITY 1",),
            ),
            Table(
                OUTCOMES_TABLE,
                """
                project LowCardinality(String),
                message_id UUID,
                recipient String,
                replay UInt16 COMMENT 'operator replays of the job; attempts restart at 1 on each',
                attempt UInt16,
                country LowCardinality(String),
                status LowCardinality(String) COMMENT 'sent, retrying, failed, dead_lettered',
                segments UInt16,
                cost Decimal(18, 6) COMMENT 'billed amount: zero unless sent for real',
                currency LowCardinality(String),
                tag LowCardinality(String),
                sender String,
                test Bool,
                provider_reference Nullable(String),
                error_code LowCardinality(Nullable(String)),
                error_message Nullable(String),
                event_id UUID,
                occurred_at DateTime64(3, 'UTC'),
                recorded_at DateTime64(3, 'UTC') DEFAULT now64(3)
                """,
                "ReplacingMergeTree",
                """
                PARTITION BY toYYYYMM(occurred_at)
                ORDER BY (project, toDate(occurred_at), message_id, recipient, replay, attempt)
                TTL toDateTime(occurred_at) + INTERVAL 12 MONTH
                """,
                settings=("ttl_only_drop_parts = 1",),
                indexes=("INDEX message_id_bloom message_id TYPE bloom_filter GRANULARITY 1",),
            ),
        ),
    ),
    Migration(
        2,
        "outcome events fanned out into rows by ClickHouse",
        (
            Table(
                OUTCOME_EVENTS_TABLE,
                """
                event_id UUID,
                message_id UUID,
                project LowCardinality(String),
                tag LowCardinality(String),
                sender String,
                test Bool,
                currency LowCardinality(String),
                attempt UInt16,
                replay UInt16,
                occurred_at DateTime64(3, 'UTC'),
                outcomes Array(Tuple(
                    recipient String,
                    country LowCardinality(String),
                    status LowCardinality(String),
                    segments UInt16,
                    cost Decimal(18, 6),
                    provider_reference Nullable(String),
                    error_code Nullable(String),
                    error_message Nullable(String)))
                """,
                "Null",
                f"COMMENT 'outcome events as they arrive; the view {OUTCOME_ROWS_VIEW} stores their rows'",
            ),
            RowsView(
                OUTCOME_ROWS_VIEW,
                source=OUTCOME_EVENTS_TABLE,
                target=OUTCOMES_TABLE,
                select="""
                SELECT
                    project, message_id, o.recipient AS recipient, replay, attempt,
                    o.country AS country, o.status AS status, o.segments AS segments, o.cost AS cost,
                    currency, tag, sender, test, o.provider_reference AS provider_reference,
                    o.error_code AS error_code, o.error_message AS error_message,
                    event_id, occurred_at
                FROM {source}
                ARRAY JOIN outcomes AS o
                """,
            ),
        ),
    ),
    Migration(
        3,
        "delivery receipts",
        (
            # One row per recipient and delivery status (the dispatcher publishes one event
            # per status change): the sorting key ends in the status, so a redelivered event
            # collapses into its row. Billing never reads this table: a recipient is billed
            # when it is sent (sms_outcomes), whatever the carrier reports later.
            Table(
                RECEIPTS_TABLE,
                """
                project LowCardinality(String),
                message_id UUID,
                recipient String,
                status LowCardinality(String)
                    COMMENT 'delivered, undelivered, expired, rejected, deleted, accepted, unknown',
                final Bool COMMENT 'false for intermediate states (accepted, unknown)',
                error_code LowCardinality(Nullable(String)) COMMENT 'the carrier''s err:, as reported',
                provider_reference Nullable(String) COMMENT 'the carrier''s message id',
                test Bool,
                event_id UUID,
                occurred_at DateTime64(3, 'UTC') COMMENT 'when the carrier says it happened',
                received_at DateTime64(3, 'UTC'),
                recorded_at DateTime64(3, 'UTC') DEFAULT now64(3)
                """,
                "ReplacingMergeTree",
                """
                PARTITION BY toYYYYMM(received_at)
                ORDER BY (project, message_id, recipient, status)
                TTL toDateTime(received_at) + INTERVAL 12 MONTH
                """,
                settings=("ttl_only_drop_parts = 1",),
                indexes=("INDEX message_id_bloom message_id TYPE bloom_filter GRANULARITY 1",),
            ),
        ),
    ),
    Migration(
        4,
        "inbound messages",
        (
            # One row per inbound SMS, keyed by its event id, so a redelivered event collapses
            # into its row. The text follows the outbound rule: kept only where the owning
            # project stores bodies, and never for an unrouted message (no project agreed to
            # keep it; its sender, destination and time are kept for the operator).
            # No message id: sharded by the event id, its deduplication key.
            Table(
                INBOUND_TABLE,
                """
                project LowCardinality(String) COMMENT 'empty: no project owns the destination (unrouted)',
                event_id UUID,
                sender String,
                destination String,
                text String COMMENT 'empty unless the project stores bodies',
                body_stored Bool,
                action LowCardinality(Nullable(String)) COMMENT 'opt_out (STOP …), opt_in (START), or null',
                provider_reference Nullable(String),
                received_at DateTime64(3, 'UTC'),
                recorded_at DateTime64(3, 'UTC') DEFAULT now64(3)
                """,
                "ReplacingMergeTree",
                """
                PARTITION BY toYYYYMM(received_at)
                ORDER BY (project, toDate(received_at), event_id)
                TTL toDateTime(received_at) + INTERVAL 12 MONTH
                """,
                settings=("ttl_only_drop_parts = 1",),
                shard_by="event_id",
            ),
        ),
    ),
)

MIGRATIONS_TABLE_COLUMNS = "version UInt32, name String, applied_at DateTime64(3, 'UTC') DEFAULT now64(3)"


def local_table(name: str) -> str:
    """The table that stores a cluster node's rows of `name` (`name` is then the Distributed one)."""
    return f"{name}{LOCAL_SUFFIX}"


def keeper_path(database: str, table: str) -> str:
    """Where a replicated table's replicas of one shard meet in Keeper: one path per shard,
    database and table, so two databases (or two deployments) on one Keeper never mix."""
    return f"/clickhouse/tables/{{shard}}/{database}/{table}"


def on_cluster(cluster: str | None) -> str:
    return "" if cluster is None else f" ON CLUSTER '{cluster}'"


def _create_table(database: str, name: str, cluster: str | None, body: str, engine: str, clauses: str) -> str:
    return (
        f"CREATE TABLE IF NOT EXISTS {database}.{name}{on_cluster(cluster)}\n"
        f"(\n{body}\n)\nENGINE = {engine}\n{dedent(clauses).strip()}"
    ).strip()


def _stored_clauses(table: Table, cluster: str | None) -> str:
    """The table's clauses and its SETTINGS. A retried batch is dropped by its insert token
    while it is among a table's last DEDUPLICATION_WINDOW inserts: on one server that
    window is opt-in (`non_replicated_…`), on a cluster it is kept in Keeper per shard."""
    if not table.engine.endswith("MergeTree"):
        return table.clauses
    window = "non_replicated_deduplication_window" if cluster is None else "replicated_deduplication_window"
    settings = ", ".join([f"{window} = {DEDUPLICATION_WINDOW}", *table.settings])
    return f"{dedent(table.clauses).strip()}\nSETTINGS {settings}"


def _replicated(engine: str, database: str, table: str) -> str:
    if not engine.endswith("MergeTree"):
        return engine  # Null keeps nothing: there is nothing to replicate
    assert "(" not in engine, "engine parameters would go after the Keeper path"
    return f"Replicated{engine}('{keeper_path(database, table)}', '{{replica}}')"


def table_statements(table: Table, database: str, cluster: str | None) -> list[str]:
    """CREATE statements of one table: as it is on a single server; on a cluster, the
    replicated table holding each shard's rows (`<name>_local`) and the Distributed table
    under the table's own name, which every read and insert (and analysts' SQL) uses."""
    columns = dedent(table.columns).strip()
    stored_body = ",\n".join([columns, *table.indexes])
    clauses = _stored_clauses(table, cluster)
    if cluster is None:
        return [_create_table(database, table.name, None, stored_body, table.engine, clauses)]
    local = local_table(table.name)
    distributed = f"Distributed('{cluster}', '{database}', '{local}', cityHash64({table.shard_by}))"
    return [
        _create_table(database, local, cluster, stored_body, _replicated(table.engine, database, local), clauses),
        _create_table(database, table.name, cluster, columns, distributed, ""),
    ]


def view_statements(view: RowsView, database: str, cluster: str | None) -> list[str]:
    """On a cluster the view runs on every node, from that node's share of the source into
    its share of the target: an event's rows stay on the shard of its message."""
    source, target = (view.source, view.target) if cluster is None else map(local_table, (view.source, view.target))
    select = dedent(view.select).strip().replace("{source}", f"{database}.{source}")
    return [
        f"CREATE MATERIALIZED VIEW IF NOT EXISTS {database}.{view.name}{on_cluster(cluster)}\n"
        f"TO {database}.{target}\nAS {select}"
    ]


def migration_statements(migration: Migration, database: str, cluster: str | None) -> list[str]:
    """The statements that apply `migration` to `database`, on a single server (cluster
    None) or on every node of `cluster`. Each is idempotent (`IF NOT EXISTS`)."""
    statements: list[str] = []
    for step in migration.steps:
        if isinstance(step, Table):
            statements += table_statements(step, database, cluster)
        else:
            statements += view_statements(step, database, cluster)
    return statements


def setup_statements(database: str, cluster: str | None) -> list[str]:
    """The database and the table recording applied migrations. On a cluster that table has
    one Keeper path for all nodes (every node a replica, whatever its shard): migrations
    are recorded once for the cluster and every node reads the record locally."""
    if cluster is None:
        engine = "ReplacingMergeTree"
    else:
        path = f"/clickhouse/tables/all/{database}/{MIGRATIONS_TABLE}"
        engine = f"ReplicatedReplacingMergeTree('{path}', '{{shard}}-{{replica}}')"
    return [
        f"CREATE DATABASE IF NOT EXISTS {database}{on_cluster(cluster)}",
        _create_table(database, MIGRATIONS_TABLE, cluster, MIGRATIONS_TABLE_COLUMNS, engine, "ORDER BY version"),
    ]


OUTCOME_EVENT_INSERT_SETTINGS: dict[str, Any] = {
    # ISO 8601 with a zone ("…T12:00:00.123456Z"), as the contracts write times.
    "date_time_input_format": "best_effort",
    # Fields the ledger does not store (`schema_version`, later optional ones) are skipped,
    # as the msgspec mirror skips them; missing optional ones take their defaults.
    "input_format_skip_unknown_fields": 1,
    "input_format_defaults_for_omitted_fields": 1,
    "input_format_json_defaults_for_missing_elements_in_named_tuple": 1,
    "input_format_json_named_tuples_as_objects": 1,
    # The insert token then also guards the rows the view writes into sms_outcomes.
    "deduplicate_blocks_in_dependent_materialized_views": 1,
}


def insert_settings(cluster: str | None) -> dict[str, Any]:
    """Settings of every ledger insert besides its deduplication token. On a cluster the
    insert returns only once each shard's replica took its rows (not queued on the node that
    received them): the ledger acks after the insert, and a retried batch reaches the same
    replicated tables with the same token, so ClickHouse drops what already landed."""
    return {} if cluster is None else {"insert_distributed_sync": 1}


def migration_token(version: int) -> str:
    """The insert token recording `version`: ledgers that applied it at the same time
    record it once (a replicated table deduplicates the same token cluster-wide)."""
    return f"{MIGRATIONS_TABLE}:{version}"


def recorded_versions(client: Any, database: str) -> set[int]:
    """Versions recorded as applied; none while the migrations table does not exist."""
    exists = client.command(
        "SELECT count() FROM system.tables WHERE database = {db:String} AND name = {table:String}",
        parameters={"db": database, "table": MIGRATIONS_TABLE},
    )
    if not int(exists):
        return set()
    rows = client.query(f"SELECT DISTINCT version FROM {database}.{MIGRATIONS_TABLE}").result_rows  # noqa: S608 -- settings-validated name
    return {int(version) for (version,) in rows}


def apply_migrations(client: Any, database: str, cluster: str | None = None) -> list[int]:
    """Bring `database` up to the newest schema (on every node of `cluster`, if given);
    returns the versions applied now.

    Several ledgers may start at once. Nothing is taken as a lock: every statement is
    idempotent, ClickHouse runs a cluster's DDL through one queue that each node works off
    in order, so a second ledger's copy of a statement finds the table there and does
    nothing, and the record is inserted with one token per version, so it is one row.
    A ledger that finds every version recorded sends no DDL at all (it starts even while a
    node of the cluster is down, which ON CLUSTER DDL would wait for).
    """
    applied = recorded_versions(client, database)
    pending = [migration for migration in SCHEMA_MIGRATIONS if migration.version not in applied]
    if not pending:
        return []
    for statement in setup_statements(database, cluster):
        client.command(statement)
    for migration in pending:
        for statement in migration_statements(migration, database, cluster):
            client.command(statement)
        client.insert(
            f"{database}.{MIGRATIONS_TABLE}",
            [[migration.version, migration.name]],
            column_names=["version", "name"],
            settings={"insert_deduplication_token": migration_token(migration.version)},
        )
    return [migration.version for migration in pending]
