"""Prometheus metrics of the ingest service, in a registry of the app's own.

Each server worker counts in its own process (into files under `PROMETHEUS_MULTIPROC_DIR`,
which `main.py` sets up); the ops server in the main process adds them up
(`all_workers_registry`), so a scrape sees the whole service on a port of its own, never
on the public API port.
"""

from __future__ import annotations

import functools
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.multiprocess import MultiProcessCollector

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
            "Recipients in accepted send requests, by project (the accounts file bounds them) and test traffic",
            ["project", "test"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "rsms_ingest_request_seconds",
            "Time to answer a request, by endpoint",
            ["endpoint"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        # Group commit at work: jobs over messages is how many jobs a broker message carried.
        self.published_messages = Counter(
            "rsms_ingest_published_messages",
            "Broker messages published with accepted jobs (each confirmed)",
            registry=self.registry,
        )
        self.published_jobs = Counter(
            "rsms_ingest_published_jobs",
            "Accepted jobs in those messages (group commit: several jobs share a message)",
            registry=self.registry,
        )
        # A metric's child of given label values, made once: `labels()` checks its arguments
        # and takes a lock at every call (every request counts in three). The values are
        # bounded: endpoints, outcome codes, the accounts file's projects.
        self.requests_of = functools.cache(self.requests.labels)
        self.accepted_recipients_of = functools.cache(self.accepted_recipients.labels)
        self.latency_of = functools.cache(self.latency.labels)


def all_workers_registry(directory: Path) -> CollectorRegistry:
    """Every worker's counts together, read from their files at each scrape."""
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=str(directory))  # type: ignore[no-untyped-call]
    return registry
