"""The composition root: builds the dispatcher's FastStream app and wires its parts."""

from __future__ import annotations

import asyncio
import logging

from faststream import FastStream
from faststream.message import StreamMessage
from faststream.middlewares import AckPolicy
from faststream.rabbit import Channel
from pydantic import ValidationError
from redis.exceptions import RedisError

from services.dispatcher.acknowledger import Acknowledger
from services.dispatcher.batching_provider import BatchingProvider
from services.dispatcher.carrier_reports import CarrierReports, CarrierReportSink
from services.dispatcher.circuit_breaker import CircuitBreaker
from services.dispatcher.http_provider import HttpProvider
from services.dispatcher.inbound import InboundDirectory, InboundSink
from services.dispatcher.inbound_rules import Keywords
from services.dispatcher.job_consumer import JobConsumer
from services.dispatcher.job_dispatcher import JobDispatcher
from services.dispatcher.job_handler import JobHandler
from services.dispatcher.metrics import DispatcherMetrics
from services.dispatcher.outbox import Outbox
from services.dispatcher.provider import Provider
from services.dispatcher.receipts import ReceiptSink
from services.dispatcher.receipts_callback import RECEIPTS_PATH, ReceiptCallback
from services.dispatcher.receipts_store import RedisReceiptStore
from services.dispatcher.retry_policy import RetryPolicy
from services.dispatcher.send_markers import SendMarkers
from services.dispatcher.settings import DispatcherSettings
from services.dispatcher.smpp.provider import SmppConfig, SmppProvider
from services.dispatcher.test_traffic_provider import TestTrafficProvider
from shared.blocklist import Blocklist
from shared.broker_connection import connect_when_available
from shared.contracts import UnmatchedReceipt
from shared.log import get_logger
from shared.ops_server import OpsServer
from shared.optouts import OptOuts
from shared.queue_depths import watch_queue_depths
from shared.rabbitmq import PublishHealth, broker_ready, cluster_broker, current_message
from shared.redis_connection import connect
from shared.redis_persistence import check_persistence, readiness_detail, warn_unless_persistent
from shared.topology import (
    DEAD_LETTER_QUEUE,
    DISPATCH_QUEUE,
    RECEIPTS_PENDING_QUEUE,
    RECEIPTS_UNMATCHED_QUEUE,
    declare_topology,
    retry_queue,
)

log = get_logger(__name__)


async def _raw_body(message: StreamMessage[object]) -> bytes:
    # The handler reads the job itself, so an invalid one is dead-lettered, not requeued.
    return message.body


def build_live_provider(settings: DispatcherSettings, sink: CarrierReportSink) -> Provider:
    if settings.provider_kind == "http":
        return HttpProvider(
            settings.provider_url,
            settings.provider_token,
            settings.provider_timeout_seconds,
            max_connections=settings.provider_max_concurrent_requests,
            receipt_callback=settings.receipt_callback(),
            deduplicates=settings.provider_deduplicates,
        )
    if settings.provider_kind == "smpp":
        return SmppProvider(SmppConfig.from_settings(settings), sink=sink)
    raise ValueError(f"unknown provider kind {settings.provider_kind!r}")


def create_app(settings: DispatcherSettings) -> FastStream:
    metrics = DispatcherMetrics()
    publishes = PublishHealth()
    broker = cluster_broker(
        settings.amqp_url,
        publishes=publishes,
        default_channel=Channel(prefetch_count=settings.dispatcher_prefetch),
        graceful_timeout=settings.dispatcher_shutdown_grace_seconds,
        log_level=logging.DEBUG,  # FastStream's per-message lines; shared/log keeps WARNING+
        # The handler takes the raw body and nothing to inject; FastDepends would resolve
        # the message object in a worker thread for every job.
        apply_types=False,
    )
    redis = connect(settings.redis_url, decode_responses=True)
    retry_policy = RetryPolicy(settings.dispatcher_max_attempts, settings.dispatcher_retry_delays_ms)
    outbox = Outbox(broker, settings.dispatcher_publish_timeout_seconds, publishes)
    # The carrier report sink: what a provider adapter hands receipts and inbound SMS to.
    receipts = ReceiptSink(
        RedisReceiptStore(redis, settings.receipts_ttl_seconds),
        outbox,
        settings.receipts_match_grace_seconds,
        max_concurrent=settings.receipts_max_concurrent,
    )
    inbound_directory = InboundDirectory(settings.accounts_file)
    inbound = InboundSink(
        inbound_directory,
        OptOuts(redis),
        outbox,
        Keywords.with_defaults(settings.inbound_opt_out_keywords, settings.inbound_opt_in_keywords),
        observe=metrics.inbound_published,
    )
    carrier = build_live_provider(settings, CarrierReports(receipts, inbound))
    batch_size, chunks_in_flight = settings.provider_chunking()
    live_provider = BatchingProvider(
        carrier,
        max_recipients=batch_size,
        max_concurrent_requests=settings.provider_max_concurrent_requests,
        max_partial_requests=settings.provider_max_partial_requests,
        observe_latency=metrics.provider_latency.observe,
    )
    # `handler` is built below (it needs the breaker, which needs this consumer to pause).
    jobs = JobConsumer(broker, lambda message: handler.handle(message), settings.dispatcher_prefetch)
    breaker = CircuitBreaker(
        live_provider,
        redis,
        jobs,
        probe_interval_seconds=settings.provider_probe_interval_seconds,
        state_ttl_seconds=settings.provider_state_ttl_seconds,
        on_change=metrics.circuit_changed,
    )
    markers = SendMarkers(
        redis,
        settings.dispatcher_marker_ttl_seconds,
        settings.redis_durability(),
        settled_ttl_seconds=settings.dispatcher_settled_marker_ttl_seconds,
    )
    handler = JobHandler(
        JobDispatcher(
            live_provider,
            TestTrafficProvider(),
            markers,
            Blocklist(redis),
            retry_policy,
            batch_size=batch_size,
            chunks_in_flight=chunks_in_flight,
            receipts=receipts,
            resend_unknown=settings.dispatcher_unknown_outcome == "resend",
        ),
        outbox,
        breaker,
        metrics,
        settings.dispatcher_infra_backoff_seconds,
        Acknowledger(),
    )

    pending = broker.subscriber(RECEIPTS_PENDING_QUEUE, ack_policy=AckPolicy.MANUAL, decoder=_raw_body)

    @pending
    async def on_pending_receipt(body: bytes) -> None:
        """A receipt back from the delay queue: match it again (see `receipts.py`)."""
        message = current_message(broker)
        try:
            waiting = UnmatchedReceipt.model_validate_json(message.body)
        except ValidationError:
            # Not one this version wrote: kept as it is for an operator, never dropped.
            await broker.publish(message.body, queue=RECEIPTS_UNMATCHED_QUEUE.name, persist=True)
            await message.ack()
            return
        try:
            await receipts.rematch(waiting)
        except RedisError as error:
            log.warning("receipt not matched: Redis failed", error=type(error).__name__)
            await receipts.retry_later(waiting)
        await message.ack()  # only now: what it became is confirmed

    async def ready() -> bool:
        try:
            # The job consumer is not a FastStream subscriber (broker_ready does not see it),
            # and it is cancelled on purpose while the provider is down.
            consuming = jobs.paused or jobs.attached()
            return consuming and await broker_ready(broker, publishes) and bool(await redis.ping())
        except (RedisError, OSError):
            return False

    async def details() -> dict[str, str]:
        # The send markers survive a Redis restart only if Redis persists (README).
        return {"redis_persistence": readiness_detail(await check_persistence(redis))}

    observability = OpsServer(
        settings.dispatcher_http_host,
        settings.dispatcher_http_port,
        metrics.registry,
        ready,
        posts={RECEIPTS_PATH: ReceiptCallback(receipts, settings.receipts_callback_token)},
        details=details,
    )

    async def check_redis() -> None:
        await warn_unless_persistent(redis, "dispatcher")
        try:
            await markers.begin_generation()
        except (RedisError, OSError) as error:
            # The first claim begins it then: only more redelivered jobs count as older.
            log.warning("send marker generation not begun: Redis failed", error=type(error).__name__)

    async def declare() -> None:
        await connect_when_available(
            broker,
            lambda: declare_topology(
                broker,
                retry_delays_ms=retry_policy.delays_in_use() or (settings.dispatcher_retry_delays_ms[0],),
            ),
        )
        await outbox.start()
        if isinstance(carrier, SmppProvider):
            # An SMSC delivers inbound SMS (and receipts) only to a bound receiver: bind now,
            # not at the first send, and only once the outbox can publish what comes in.
            carrier.start()

    watchers: list[asyncio.Task[None]] = []

    async def watch_depths_and_accounts() -> None:
        queues = [DISPATCH_QUEUE, *(retry_queue(d) for d in retry_policy.delays_in_use()), DEAD_LETTER_QUEUE]

        def record(name: str, depth: int) -> None:
            metrics.queue_depth.labels(name).set(depth)

        watchers.append(asyncio.create_task(watch_queue_depths(broker, queues, record, 5.0)))
        watchers.append(asyncio.create_task(inbound_directory.watch(settings.accounts_reload_seconds)))

    async def start_jobs() -> None:
        await jobs.start()

    async def stop_jobs() -> None:
        # Before the broker stops: the jobs in flight are acknowledged on the open channel.
        await jobs.stop(settings.dispatcher_shutdown_grace_seconds)

    async def release() -> None:
        for task in watchers:
            task.cancel()
        await breaker.close()
        await live_provider.close()
        await markers.close()
        await redis.aclose()
        await observability.stop()

    return FastStream(
        broker,
        on_startup=[observability.start, check_redis, declare],  # probes answer (not ready) while the broker is away
        after_startup=[start_jobs, watch_depths_and_accounts],
        on_shutdown=[stop_jobs],
        after_shutdown=[release],
    )
