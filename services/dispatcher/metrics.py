"""The dispatcher's Prometheus metrics, in a registry of its own (one per dispatcher)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from shared.provider_state import ProviderState


class DispatcherMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.recipients = Counter(
            "rsms_dispatcher_recipients_total",
            "Recipient outcomes by project (the accounts file bounds them), status (sent, retrying, "
            "failed, dead_lettered) and traffic.",
            ["project", "status", "traffic"],
            registry=self.registry,
        )
        self.jobs = Counter(
            "rsms_dispatcher_jobs_total",
            "Jobs handled, by result: done, requeued (circuit open / infrastructure), invalid.",
            ["result"],
            registry=self.registry,
        )
        self.retries = Counter(
            "rsms_dispatcher_retries_total",
            "Jobs scheduled for another attempt.",
            registry=self.registry,
        )
        self.dead_lettered = Counter(
            "rsms_dispatcher_dead_lettered_total",
            "Jobs put on the dead-letter queue, by reason.",
            ["reason"],
            registry=self.registry,
        )
        self.provider_latency = Histogram(
            "rsms_dispatcher_provider_request_seconds",
            "Provider send request latency.",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=self.registry,
        )
        self.circuit_open = Gauge(
            "rsms_dispatcher_circuit_open",
            "1 while the provider refuses the account and sending is stopped.",
            ["provider_state"],
            registry=self.registry,
        )
        self.queue_depth = Gauge(
            "rsms_dispatcher_queue_depth",
            "Messages waiting: the dispatch queue, the retry delay queues, the dead-letter queue.",
            ["queue"],
            registry=self.registry,
        )
        self.accept_to_send = Histogram(
            "rsms_dispatcher_accept_to_send_seconds",
            "From acceptance by ingest to the end of the first send attempt: consumer lag plus "
            "sending; it grows when dispatchers fall behind.",
            buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900),
            registry=self.registry,
        )
        self.inbound = Counter(
            "rsms_dispatcher_inbound_total",
            "Inbound SMS published, by routing (routed, unrouted: no project owns the destination) "
            "and opt-out action (opt_out, opt_in, none).",
            ["routing", "action"],
            registry=self.registry,
        )
        self.in_flight = Gauge(
            "rsms_dispatcher_jobs_in_flight",
            "Jobs being dispatched right now.",
            registry=self.registry,
        )
        self.circuit_changed(ProviderState.OK)

    def circuit_changed(self, state: ProviderState) -> None:
        for candidate in ProviderState:
            if candidate is not ProviderState.OK:
                self.circuit_open.labels(candidate.value).set(1 if candidate is state else 0)

    def inbound_published(self, routed: bool, action: str | None) -> None:
        self.inbound.labels("routed" if routed else "unrouted", action or "none").inc()
