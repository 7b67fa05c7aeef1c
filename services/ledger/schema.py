"""The ledger's ClickHouse tables and the versioned migrations that create them.

`sms_requests` is the audit trail: one row per accepted send request. `sms_outcomes` holds
one row per recipient per dispatch attempt. Both are ReplacingMergeTree tables keyed so a
redelivered event collapses into the row it repeats; the reads in `reads.py` deduplicate
on their own as well, so they count correctly before any merge has happened.

Both are partitioned by month and ordered by (project, day, message id, ...): billing reads
one project over a date range, status reads one project's message (helped by a bloom
filter on `message_id`). Rows expire after 12 months, the contract's retention promise;
with monthly partitions TTL drops whole parts.

A migration is a version and statements; `{db}` is replaced by the database name. Applied
versions are recorded in `schema_migrations`. Statements are idempotent (`IF NOT EXISTS`),
so two ledgers starting at once against one server cannot break each other.
Never edit an applied migration: append a new one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

REQUESTS_TABLE = "sms_requests"
OUTCOMES_TABLE = "sms_outcomes"
MIGRATIONS_TABLE = "schema_migrations"

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


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    statements: tuple[str, ...]


SCHEMA_MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "requests and recipient outcomes",
        (
            f"""
            CREATE TABLE IF NOT EXISTS {{db}}.{REQUESTS_TABLE}
            (
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
                recorded_at DateTime64(3, 'UTC') DEFAULT now64(3),
                INDEX message_id_bloom message_id TYPE bloom_filter GRANULARITY 1
            )
            ENGINE = ReplacingMergeTree
            PARTITION BY toYYYYMM(accepted_at)
            ORDER BY (project, toDate(accepted_at), message_id)
            TTL toDateTime(accepted_at) + INTERVAL 12 MONTH
            SETTINGS non_replicated_deduplication_window = 10000, ttl_only_drop_parts = 1
            """,
            f"""
            CREATE TABLE IF NOT EXISTS {{db}}.{OUTCOMES_TABLE}
            (
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
                recorded_at DateTime64(3, 'UTC') DEFAULT now64(3),
                INDEX message_id_bloom message_id TYPE bloom_filter GRANULARITY 1
            )
            ENGINE = ReplacingMergeTree
            PARTITION BY toYYYYMM(occurred_at)
            ORDER BY (project, toDate(occurred_at), message_id, recipient, replay, attempt)
            TTL toDateTime(occurred_at) + INTERVAL 12 MONTH
            SETTINGS non_replicated_deduplication_window = 10000, ttl_only_drop_parts = 1
            """,
        ),
    ),
)


def apply_migrations(client: Any, database: str) -> list[int]:
    """Bring `database` up to the newest schema; returns the versions applied now."""
    client.command(f"CREATE DATABASE IF NOT EXISTS {database}")
    client.command(
        f"""
        CREATE TABLE IF NOT EXISTS {database}.{MIGRATIONS_TABLE}
        (version UInt32, name String, applied_at DateTime64(3, 'UTC') DEFAULT now64(3))
        ENGINE = ReplacingMergeTree ORDER BY version
        """
    )
    applied = {
        row[0]
        for row in client.query(f"SELECT version FROM {database}.{MIGRATIONS_TABLE}").result_rows  # noqa: S608 -- settings-validated name
    }
    newly_applied: list[int] = []
    for migration in SCHEMA_MIGRATIONS:
        if migration.version in applied:
            continue
        for statement in migration.statements:
            client.command(statement.replace("{db}", database))
        client.insert(
            f"{database}.{MIGRATIONS_TABLE}",
            [[migration.version, migration.name]],
            column_names=["version", "name"],
        )
        newly_applied.append(migration.version)
    return newly_applied
