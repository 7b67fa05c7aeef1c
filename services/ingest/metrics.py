"""Prometheus metrics of the ingest service, in a registry of the app's own."""

from __future__ import annotations

import os

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

MULTIPROCESS_ENV = "PROMETHEUS_MULTIPROC_DIR"

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class IngestMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "rsms_ingest_requests",
            "API requests by endpoint and outcome code ('OK' when accepted)",
            ["endpoint", "code"],
            registry=self.registry,
        )
        self.accepted_recipients = Counter(
            "rsms_ingest_accepted_recipients",
            "Recipients in accepted send requests",
            ["test"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "rsms_ingest_request_seconds",
            "Time to answer a request, by endpoint",
            ["endpoint"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )

    def exposition(self) -> bytes:
        """The metrics text; with several server workers, all workers' counts together."""
        directory = os.environ.get(MULTIPROCESS_ENV)
        if not directory:
            return bytes(generate_latest(self.registry))
        combined = CollectorRegistry()
        MultiProcessCollector(combined, path=directory)  # type: ignore[no-untyped-call]
        return bytes(generate_latest(combined))
