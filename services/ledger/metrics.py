"""Prometheus metrics of one ledger process, in a registry of its own (tests run several)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

ROW_BUCKETS = (1, 10, 100, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000)
SECOND_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class LedgerMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.events_consumed = Counter(
            "rsms_ledger_events_consumed_total",
            "Events taken off the broker.",
            ["queue"],
            registry=self.registry,
        )
        self.events_rejected = Counter(
            "rsms_ledger_events_rejected_total",
            "Events the ledger cannot record, moved to the ledger dead-letter queue.",
            ["queue"],
            registry=self.registry,
        )
        self.rows_written = Counter(
            "rsms_ledger_rows_written_total",
            "Rows inserted into ClickHouse.",
            ["table"],
            registry=self.registry,
        )
        self.batch_rows = Histogram(
            "rsms_ledger_batch_rows",
            "Rows per flushed batch.",
            buckets=ROW_BUCKETS,
            registry=self.registry,
        )
        self.batch_messages = Histogram(
            "rsms_ledger_batch_messages",
            "Broker messages per flushed batch.",
            buckets=ROW_BUCKETS,
            registry=self.registry,
        )
        self.insert_seconds = Histogram(
            "rsms_ledger_insert_seconds",
            "Time to write one batch to ClickHouse.",
            buckets=SECOND_BUCKETS,
            registry=self.registry,
        )
        self.insert_failures = Counter(
            "rsms_ledger_insert_failures_total",
            "Batch writes ClickHouse did not take (retried).",
            registry=self.registry,
        )
        self.pending_rows = Gauge(
            "rsms_ledger_pending_rows",
            "Rows held in memory, waiting for the next flush.",
            registry=self.registry,
        )
        self.clickhouse_up = Gauge(
            "rsms_ledger_clickhouse_up",
            "1 while the last ClickHouse write or probe succeeded.",
            registry=self.registry,
        )
        self.queue_depth = Gauge(
            "rsms_ledger_queue_depth",
            "Messages ready in a ledger queue (consumer lag).",
            ["queue"],
            registry=self.registry,
        )
        self.queries_answered = Counter(
            "rsms_ledger_queries_total",
            "Read queries answered.",
            ["kind", "outcome"],
            registry=self.registry,
        )
