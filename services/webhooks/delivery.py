"""One delivery attempt: sign, POST, and on anything but a 2xx put it on the retry path.

Isolation (`slots.py`): each project has a few slots. While its receiver answers, a
delivery that finds them taken waits for one (a few at most); once a request failed, it
does not wait: it is postponed to the retry path at once. A postponement is not an
attempt (nothing was sent): it keeps the delivery's attempts and waits its current
backoff, so a burst never escalates a healthy project's backoff. So a
project whose receiver hangs holds at most its own slots, for at most the request timeout
each, and the consumers keep taking everyone else's events.

A delivery returns once the receiver took it, or it is confirmed on a delay queue, or
dead-lettered after the last attempt; it raises only when the broker did not confirm
that (the caller hands its messages back to the queue: at least once, never lost).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Protocol

from services.webhooks.endpoints import EndpointDirectory
from services.webhooks.metrics import WebhooksMetrics
from services.webhooks.retry_policy import RetryPolicy
from services.webhooks.signing import request_body, signed_headers
from services.webhooks.slots import ProjectSlots
from shared.contracts import WebhookDeadLetter, WebhookDelivery, WebhookEvent


class Client(Protocol):
    async def post(self, url: str, headers: dict[str, str], body: bytes) -> str | None: ...


class Outbox(Protocol):
    async def retry_later(self, delivery: WebhookDelivery, delay_ms: int) -> None: ...

    async def dead_letter(self, letter: WebhookDeadLetter) -> None: ...


class Deliverer:
    def __init__(
        self,
        endpoints: EndpointDirectory,
        client: Client,
        outbox: Outbox,
        policy: RetryPolicy,
        slots: ProjectSlots,
        metrics: WebhooksMetrics,
        logger: Any,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._endpoints = endpoints
        self._client = client
        self._outbox = outbox
        self._policy = policy
        self._slots = slots
        self._metrics = metrics
        self._log = logger
        self._clock = clock
        # Projects whose last request failed: their deliveries do not wait for a slot.
        self._failing: set[str] = set()

    async def deliver_new(self, project: str, events: list[WebhookEvent]) -> None:
        """A fresh batch (`batcher.py`): its first attempt."""
        delivery = WebhookDelivery(
            delivery_id=uuid.uuid4(), project=project, events=events, created_at=datetime.now(UTC)
        )
        await self.deliver(delivery)

    async def deliver(self, delivery: WebhookDelivery) -> None:
        project = delivery.project
        endpoint = self._endpoints.get(project)
        if endpoint is None:
            # The webhook was removed since: the project no longer wants these.
            self._metrics.requests.labels(project, "dropped").inc()
            self._log.info("webhooks.dropped_no_webhook", project=project, delivery_id=str(delivery.delivery_id))
            return
        if not await self._slots.acquire(project, len(delivery.events), may_wait=project not in self._failing):
            self._metrics.requests.labels(project, "postponed").inc()
            in_flight = self._slots.in_use(project)
            await self._postpone(delivery, f"postponed: {in_flight} requests to this project in flight")
            return
        body = request_body(delivery.events)
        headers = signed_headers(endpoint.secret, int(self._clock()), body, delivery.delivery_id)
        self._metrics.in_flight.inc()
        started = time.monotonic()
        try:
            error = await self._client.post(endpoint.url, headers, body)
        finally:
            self._metrics.in_flight.dec()
            self._slots.release(project)
        self._metrics.request_seconds.observe(time.monotonic() - started)
        self._metrics.batch_events.observe(len(delivery.events))
        if error is None:
            self._failing.discard(project)
            self._metrics.requests.labels(project, "delivered").inc()
            self._metrics.events_delivered.labels(project).inc(len(delivery.events))
            return
        self._failing.add(project)
        self._metrics.requests.labels(project, "failed").inc()
        await self._not_taken(delivery, error)

    async def _postpone(self, delivery: WebhookDelivery, reason: str) -> None:
        delay_ms = self._policy.backoff(delivery.attempts)
        await self._outbox.retry_later(delivery.model_copy(update={"last_error": reason}), delay_ms)
        self._log.debug(  # one a batch while a receiver hangs: the metrics count them
            "webhooks.postponed",
            project=delivery.project,
            delivery_id=str(delivery.delivery_id),
            events=len(delivery.events),
            retry_in_ms=delay_ms,
        )

    async def _not_taken(self, delivery: WebhookDelivery, error: str) -> None:
        attempts = delivery.attempts + 1
        updated = delivery.model_copy(update={"attempts": attempts, "last_error": error})
        delay_ms = self._policy.delay_after(attempts)
        fields = {
            "project": delivery.project,
            "delivery_id": str(delivery.delivery_id),
            "events": len(delivery.events),
            "attempts": attempts,
            "error": error,
        }
        if delay_ms is None:
            await self._outbox.dead_letter(
                WebhookDeadLetter(
                    reason="attempts_exhausted",
                    detail=error,
                    dead_lettered_at=datetime.now(UTC),
                    project=delivery.project,
                    delivery=updated,
                )
            )
            self._metrics.dead_lettered.labels("attempts_exhausted").inc()
            self._log.warning("webhooks.dead_lettered", **fields)
            return
        await self._outbox.retry_later(updated, delay_ms)
        self._log.info("webhooks.retry_scheduled", retry_in_ms=delay_ms, **fields)
