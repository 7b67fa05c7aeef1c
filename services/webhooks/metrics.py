"""Prometheus metrics of one webhook sender, in a registry of its own (tests run several)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

SECOND_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
EVENT_BUCKETS = (1, 2, 5, 10, 25, 50, 100, 250, 500, 1_000)


class WebhooksMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.events = Counter(
            "rsms_webhooks_events_total",
            "Webhook events taken for delivery, by source (outcomes, receipts, inbound).",
            ["source"],
            registry=self.registry,
        )
        self.requests = Counter(
            "rsms_webhooks_requests_total",
            "Deliveries by project and result: delivered, failed (retried or dead-lettered), postponed "
            "(the project's requests were all in flight), dropped (its webhook was removed).",
            ["project", "result"],
            registry=self.registry,
        )
        self.events_delivered = Counter(
            "rsms_webhooks_events_delivered_total",
            "Events a receiver took (2xx).",
            ["project"],
            registry=self.registry,
        )
        self.dead_lettered = Counter(
            "rsms_webhooks_dead_lettered_total",
            "Deliveries given up on after the last attempt, or unreadable events.",
            ["reason"],
            registry=self.registry,
        )
        self.request_seconds = Histogram(
            "rsms_webhooks_request_seconds",
            "Time a receiver took to answer.",
            buckets=SECOND_BUCKETS,
            registry=self.registry,
        )
        self.batch_events = Histogram(
            "rsms_webhooks_batch_events",
            "Events per request.",
            buckets=EVENT_BUCKETS,
            registry=self.registry,
        )
        self.in_flight = Gauge(
            "rsms_webhooks_requests_in_flight",
            "Requests waiting for a receiver's answer.",
            registry=self.registry,
        )
        self.events_bound = Gauge(
            "rsms_webhooks_events_bound",
            "1 while this sender keeps its event queues bound to the exchanges (some project has a "
            "webhook), 0 while it keeps them unbound (events are not copied for webhooks).",
            registry=self.registry,
        )
        self.queue_depth = Gauge(
            "rsms_webhooks_queue_depth",
            "Messages ready in a webhook queue (lag, waiting retries, dead letters).",
            ["queue"],
            registry=self.registry,
        )
