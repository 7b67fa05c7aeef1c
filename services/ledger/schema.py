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
OUTCOME_EVENTS_TABLE = "sms_outcome_events"
OUTCOME_ROWS_VIEW = "sms_outcome_rows"
RECEIPTS_TABLE = "sms_receipts"
INBOUND_TABLE = "sms_inbound"
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
    Migration(
        2,
        "outcome events fanned out into rows by ClickHouse",
        (
            f"""
            CREATE TABLE IF NOT EXISTS {{db}}.{OUTCOME_EVENTS_TABLE}
            (
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
            )
            ENGINE = Null
            COMMENT 'outcome events as they arrive; the view {OUTCOME_ROWS_VIEW} stores their rows'
            """,
            f"""
            CREATE MATERIALIZED VIEW IF NOT EXISTS {{db}}.{OUTCOME_ROWS_VIEW}
            TO {{db}}.{OUTCOMES_TABLE}
            AS SELECT
                project, message_id, o.recipient AS recipient, replay, attempt,
                o.country AS country, o.status AS status, o.segments AS segments, o.cost AS cost,
                currency, tag, sender, test, o.provider_reference AS provider_reference,
                o.error_code AS error_code, o.error_message AS error_message,
                event_id, occurred_at
            FROM {{db}}.{OUTCOME_EVENTS_TABLE}
            ARRAY JOIN outcomes AS o
            """,  # noqa: S608 -- constant names; {db} is a settings-validated identifier
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
            f"""
            CREATE TABLE IF NOT EXISTS {{db}}.{RECEIPTS_TABLE}
            (
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
                recorded_at DateTime64(3, 'UTC') DEFAULT now64(3),
                INDEX message_id_bloom message_id TYPE bloom_filter GRANULARITY 1
            )
            ENGINE = ReplacingMergeTree
            PARTITION BY toYYYYMM(received_at)
            ORDER BY (project, message_id, recipient, status)
            TTL toDateTime(received_at) + INTERVAL 12 MONTH
            SETTINGS non_replicated_deduplication_window = 10000, ttl_only_drop_parts = 1
            """,
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
            f"""
            CREATE TABLE IF NOT EXISTS {{db}}.{INBOUND_TABLE}
            (
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
            )
            ENGINE = ReplacingMergeTree
            PARTITION BY toYYYYMM(received_at)
            ORDER BY (project, toDate(received_at), event_id)
            TTL toDateTime(received_at) + INTERVAL 12 MONTH
            SETTINGS non_replicated_deduplication_window = 10000, ttl_only_drop_parts = 1
            """,
        ),
    ),
)

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
