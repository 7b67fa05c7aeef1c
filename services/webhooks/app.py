"""Builds the webhook sender: the one place that wires broker, accounts, batcher and HTTP."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from faststream import AckPolicy, FastStream
from faststream.message import StreamMessage
from faststream.rabbit import Channel, RabbitQueue
from faststream.rabbit.annotations import RabbitMessage
from faststream.rabbit.subscriber import RabbitSubscriber
from pydantic import TypeAdapter, ValidationError

from services.webhooks.batcher import EventBatcher, NotDelivered
from services.webhooks.bindings import EventBindings
from services.webhooks.delivery import Deliverer
from services.webhooks.endpoints import EndpointDirectory
from services.webhooks.events import by_project, inbound_events, outcome_message_events, receipt_events
from services.webhooks.http_client import WebhookClient
from services.webhooks.metrics import WebhooksMetrics
from services.webhooks.outbox import WebhookOutbox
from services.webhooks.retry_policy import RetryPolicy
from services.webhooks.settings import WebhooksSettings
from services.webhooks.slots import ProjectSlots
from shared import rabbitmq
from shared.broker_connection import connect_when_available
from shared.contracts import (
    InboundMessage,
    OutcomeBatch,
    OutcomeEvent,
    ReceiptEvent,
    WebhookDeadLetter,
    WebhookDelivery,
    WebhookEvent,
)
from shared.log import get_logger
from shared.ops_server import OpsServer
from shared.queue_depths import watch_queue_depths
from shared.rabbitmq import PublishHealth, broker_ready, cluster_broker
from shared.topology import (
    WEBHOOK_DEAD_LETTER_QUEUE,
    WEBHOOK_INBOUND_QUEUE,
    WEBHOOK_OUTCOMES_QUEUE,
    WEBHOOK_RECEIPTS_QUEUE,
    WEBHOOK_RETRIES_QUEUE,
    declare_topology,
    declare_webhook_queues,
)

# A message whose events could not be settled (the broker refused a retry's publish) goes
# back to its queue after this pause, so a broker in trouble is not met with a hot loop.
INFRA_BACKOFF_SECONDS = 1.0
QUEUE_POLL_SECONDS = 5.0
# What each source queue's bodies are: an outcome message is one event or a batch of them
# (told apart by their fields: only a batch has `events`).
OUTCOME_MESSAGE: TypeAdapter[OutcomeEvent | OutcomeBatch] = TypeAdapter(OutcomeEvent | OutcomeBatch)
RECEIPT: TypeAdapter[ReceiptEvent] = TypeAdapter(ReceiptEvent)
INBOUND: TypeAdapter[InboundMessage] = TypeAdapter(InboundMessage)


async def keep_body_undecoded(message: StreamMessage[Any]) -> bytes:
    """Handlers read the bodies themselves, so an unreadable one is dead-lettered, not requeued."""
    return message.body


def build_app(settings: WebhooksSettings, metrics: WebhooksMetrics | None = None) -> FastStream:
    """`metrics`: pass one in to read the sender's counters from the same process (bench)."""
    log = get_logger("webhooks")
    metrics = metrics or WebhooksMetrics()
    publishes = PublishHealth()
    broker = cluster_broker(
        settings.amqp_url,
        publishes=publishes,
        graceful_timeout=settings.webhooks_shutdown_seconds,
        log_level=logging.DEBUG,  # FastStream's per-message lines; shared/log keeps WARNING+
        # The handlers take the raw body and nothing to inject: no FastDepends per message.
        apply_types=False,
    )
    policy = RetryPolicy(settings.webhooks_max_attempts, settings.webhooks_retry_delays_ms)
    endpoints = EndpointDirectory(settings.accounts_file)
    bindings = EventBindings(broker, endpoints, metrics)
    client = WebhookClient(settings.webhooks_request_timeout_seconds)
    outbox = WebhookOutbox(broker, settings.webhooks_publish_timeout_seconds)
    slots = ProjectSlots(settings.webhooks_max_concurrent_per_project, settings.webhooks_max_waiting_events_per_project)
    deliverer = Deliverer(endpoints, client, outbox, policy, slots, metrics, log)
    batcher = EventBatcher(
        deliverer.deliver_new,
        max_events=settings.webhooks_batch_max_events,
        max_wait_seconds=settings.webhooks_batch_max_wait_ms / 1000,
        logger=log,
    )

    async def dead_letter_unreadable(body: bytes, source: str, error: ValidationError) -> None:
        await outbox.dead_letter(
            WebhookDeadLetter(
                reason="invalid_event",
                detail=f"{source}: not a message this version reads ({error.error_count()} errors)",
                dead_lettered_at=datetime.now(UTC),
                body=body.decode("utf-8", errors="replace"),
            )
        )
        metrics.dead_lettered.labels("invalid_event").inc()
        log.error("webhooks.event_unreadable", queue=source, errors=error.error_count())

    async def take_events(
        message: RabbitMessage,
        source: str,
        contract: TypeAdapter[Any],
        to_events: Callable[[Any], list[WebhookEvent]],
    ) -> None:
        if endpoints.empty():
            # Nobody to tell: let it go unread (queued before the last webhook went; the
            # queues are unbound meanwhile, bindings.py). Reading a batch of outcomes to
            # learn that cost more CPU per SMS than any other step of a gateway without webhooks.
            await message.ack()
            return
        try:
            events = to_events(contract.validate_json(message.body))
        except ValidationError as error:
            await dead_letter_unreadable(message.body, source, error)
            await message.ack()
            return
        # Events of a project without a webhook go no further (nor do non-final ones).
        projects = {p: e for p, e in by_project(events).items() if endpoints.get(p) is not None}
        if not projects:
            await message.ack()
            return
        metrics.events.labels(source).inc(sum(len(e) for e in projects.values()))
        outcomes = await asyncio.gather(
            *(batcher.submit(project, project_events) for project, project_events in projects.items()),
            return_exceptions=True,
        )
        for outcome in outcomes:
            if isinstance(outcome, NotDelivered):
                # The projects whose events were taken get them again on the redelivery
                # (at least once; the receiver dedupes by the events' stable ids).
                if batcher.closing:
                    return  # left unacknowledged: back to the queue when the connection closes
                await asyncio.sleep(INFRA_BACKOFF_SECONDS)
                await message.nack(requeue=True)
                return
            if isinstance(outcome, BaseException):
                raise outcome
        await message.ack()

    def source(queue: RabbitQueue) -> RabbitSubscriber:
        # No exchange here: FastStream would bind the queue at every start (and aio-pika
        # re-bind it at every reconnect), whatever `bindings` asserts.
        return broker.subscriber(
            queue,
            channel=Channel(prefetch_count=settings.webhooks_prefetch),
            ack_policy=AckPolicy.MANUAL,
            no_reply=True,
            decoder=keep_body_undecoded,
        )

    def current_message() -> RabbitMessage:
        return rabbitmq.current_message(broker)

    @source(WEBHOOK_OUTCOMES_QUEUE)
    async def on_outcome(body: bytes) -> None:
        await take_events(current_message(), "outcomes", OUTCOME_MESSAGE, outcome_message_events)

    @source(WEBHOOK_RECEIPTS_QUEUE)
    async def on_receipt(body: bytes) -> None:
        await take_events(current_message(), "receipts", RECEIPT, receipt_events)

    @source(WEBHOOK_INBOUND_QUEUE)
    async def on_inbound(body: bytes) -> None:
        await take_events(current_message(), "inbound", INBOUND, inbound_events)

    @broker.subscriber(
        WEBHOOK_RETRIES_QUEUE,
        channel=Channel(prefetch_count=settings.webhooks_prefetch),
        ack_policy=AckPolicy.MANUAL,
        no_reply=True,
        decoder=keep_body_undecoded,
    )
    async def on_retry(body: bytes) -> None:
        """A delivery back from its delay queue: tried again as it is (no new batching)."""
        message = current_message()
        try:
            delivery = WebhookDelivery.model_validate_json(message.body)
        except ValidationError as error:
            await dead_letter_unreadable(message.body, "retries", error)
            await message.ack()
            return
        try:
            await deliverer.deliver(delivery)
        except Exception as error:
            log.error("webhooks.retry_not_settled", project=delivery.project, error=type(error).__name__)
            await asyncio.sleep(INFRA_BACKOFF_SECONDS)
            await message.nack(requeue=True)
            return
        await message.ack()

    async def ready() -> bool:
        return await broker_ready(broker, publishes)

    ops = OpsServer(settings.webhooks_http_host, settings.webhooks_http_port, metrics.registry, ready)
    background: list[asyncio.Task[None]] = []

    async def start() -> None:
        await ops.start()

        async def declare() -> None:
            await declare_topology(broker)
            await declare_webhook_queues(broker, policy.delays_in_use() or (settings.webhooks_retry_delays_ms[0],))
            # Before the consumers start: a deployment an older version made has the
            # bindings, and one without webhooks loses them here.
            await bindings.assert_wanted()

        await connect_when_available(broker, declare)

    async def after_start() -> None:
        background.append(
            asyncio.create_task(bindings.watch(settings.accounts_reload_seconds), name="webhooks-accounts")
        )
        background.append(
            asyncio.create_task(
                watch_queue_depths(
                    broker,
                    (
                        WEBHOOK_OUTCOMES_QUEUE,
                        WEBHOOK_RECEIPTS_QUEUE,
                        WEBHOOK_INBOUND_QUEUE,
                        WEBHOOK_RETRIES_QUEUE,
                        WEBHOOK_DEAD_LETTER_QUEUE,
                    ),
                    lambda name, depth: metrics.queue_depth.labels(name).set(depth),
                    QUEUE_POLL_SECONDS,
                ),
                name="webhooks-queue-depths",
            )
        )
        log.info(
            "webhooks.started",
            batch_max_events=settings.webhooks_batch_max_events,
            batch_max_wait_ms=settings.webhooks_batch_max_wait_ms,
            max_concurrent_per_project=settings.webhooks_max_concurrent_per_project,
            request_timeout_seconds=settings.webhooks_request_timeout_seconds,
        )

    async def stop_batching() -> None:
        # The reload ticks first: one that ran while the broker closes would warn of it.
        bindings.stop()
        # Before the broker stops: what is open is sent, what is in flight gets until the
        # deadline, and the handlers waiting on them return (acked, or left for redelivery)
        # instead of being cancelled by the broker's own graceful timeout.
        await batcher.close(settings.webhooks_shutdown_seconds)

    async def after_stop() -> None:
        for task in background:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await client.close()
        await ops.stop()
        log.info("webhooks.stopped")

    return FastStream(
        broker,
        on_startup=[start],
        after_startup=[after_start],
        on_shutdown=[stop_batching],
        after_shutdown=[after_stop],
    )
