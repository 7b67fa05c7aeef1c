"""Builds the ledger: the one place that wires broker, ClickHouse, batcher and probes."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from typing import Any

from faststream import FastStream
from faststream.rabbit import Channel
from faststream.rabbit.annotations import RabbitMessage

from services.ledger.batcher import RowBatcher
from services.ledger.clickhouse import LedgerWriter, StorageUnavailable, answers, open_client
from services.ledger.handlers import answer_query
from services.ledger.intake import EVENT_QUEUES, SETTLE_ERRORS, Delivery, EventIntake
from services.ledger.metrics import LedgerMetrics
from services.ledger.reads import LedgerReader
from services.ledger.rows import RowChunk
from services.ledger.settings import LedgerSettings
from services.ledger.sql_passthrough import SqlPassthrough
from services.ledger.status import StatusSources
from services.ledger.status_page import render_status_page
from shared.broker_connection import connect_when_available
from shared.contracts import LedgerReply
from shared.log import get_logger
from shared.ops_server import OpsServer
from shared.queue_depths import watch_queue_depths
from shared.rabbitmq import PublishHealth, RawConsumer, broker_ready, cluster_broker, consume_raw, consumer_attached
from shared.redis_connection import connect
from shared.topology import (
    LEDGER_ACCEPTED_QUEUE,
    LEDGER_DEAD_LETTER_QUEUE,
    LEDGER_INBOUND_QUEUE,
    LEDGER_OUTCOMES_QUEUE,
    LEDGER_QUERIES_QUEUE,
    LEDGER_RECEIPTS_QUEUE,
    declare_topology,
)

QUERY_PREFETCH = 8


class LedgerStorage:
    """The ClickHouse clients of one ledger, opened once ClickHouse answers.

    Writes, reads and analysts' SQL get a client each: a chDB client serialises its calls,
    and a status query should not wait behind a large insert or a long analysis.
    """

    def __init__(self, settings: LedgerSettings, metrics: LedgerMetrics, log: Any) -> None:
        self._settings = settings
        self._metrics = metrics
        self._log = log
        self.writer: LedgerWriter | None = None
        self.reader: LedgerReader | None = None
        self.sql: SqlPassthrough | None = None
        self._probe_client: Any = None

    async def open_when_available(self) -> None:
        """Waits (with backoff) until ClickHouse answers and the schema is current."""
        delay = self._settings.ledger_retry_initial_seconds
        while True:
            try:
                await asyncio.to_thread(self._open)
                self._metrics.clickhouse_up.set(1)
                return
            except StorageUnavailable as error:
                self._metrics.clickhouse_up.set(0)
                self._log.warning(
                    "ledger.clickhouse_unavailable_at_start",
                    error=str(error)[:500],
                    retry_in_seconds=round(delay, 2),
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, self._settings.ledger_retry_max_seconds)

    def _open(self) -> None:
        database = self._settings.clickhouse_database
        write_client = open_client(self._settings.clickhouse_dsn)
        writer = LedgerWriter(write_client, database, self._settings.clickhouse_cluster)
        applied = writer.migrate()
        read_client = open_client(self._settings.clickhouse_dsn)
        sql = SqlPassthrough(
            open_client(self._settings.clickhouse_dsn),
            self._settings.ledger_sql_max_rows,
            self._settings.ledger_sql_max_seconds,
        )
        self.writer, self.reader, self.sql, self._probe_client = (
            writer,
            LedgerReader(read_client, database),
            sql,
            read_client,
        )
        self._log.info("ledger.schema_ready", database=database, migrations_applied=applied)

    async def write(self, chunks: list[RowChunk]) -> None:
        assert self.writer is not None, "events are consumed only after storage is open"
        written = await asyncio.to_thread(self.writer.write_batch, chunks)
        for table, rows in written.items():
            self._metrics.rows_written.labels(table).inc(rows)

    async def answers(self) -> bool:
        return self._probe_client is not None and await asyncio.to_thread(answers, self._probe_client)


def build_app(settings: LedgerSettings, metrics: LedgerMetrics | None = None) -> FastStream:
    """`metrics`: pass one in to read the ledger's counters from the same process (bench)."""
    log = get_logger("ledger")
    metrics = metrics or LedgerMetrics()
    storage = LedgerStorage(settings, metrics, log)
    # Per-message "Received/Processed" lines only at DEBUG: thousands a second otherwise.
    publishes = PublishHealth()
    broker = cluster_broker(
        settings.amqp_url,
        publishes=publishes,
        graceful_timeout=settings.ledger_shutdown_seconds,
        log_level=logging.DEBUG,
    )

    async def dead_letter(body: bytes, reason: str) -> None:
        await broker.publish(
            body,
            queue=LEDGER_DEAD_LETTER_QUEUE.name,
            persist=True,
            headers={"x-rsms-reason": reason},
            content_type="application/json",
        )

    intake = EventIntake(dead_letter, metrics, log)
    batcher: RowBatcher[Delivery] = RowBatcher(
        storage.write,
        intake.settle,
        intake.hand_back,
        max_rows=settings.ledger_batch_rows,
        max_messages=settings.ledger_batch_messages,
        max_seconds=settings.ledger_batch_seconds,
        retry_initial_seconds=settings.ledger_retry_initial_seconds,
        retry_max_seconds=settings.ledger_retry_max_seconds,
        metrics=metrics,
        logger=log,
    )
    intake.batcher = batcher
    consumers: list[RawConsumer] = []

    async def ready() -> bool:
        return (
            storage.writer is not None
            and batcher.storage_healthy
            and await broker_ready(broker, publishes)
            # The event consumers are not FastStream subscribers: broker_ready does not see them.
            and len(consumers) == len(EVENT_QUEUES)
            and all(consumer_attached(c.queue, c.consumer_tag) for c in consumers)
            and await storage.answers()
        )

    # The status page's only use of Redis: the provider state the dispatcher keeps there.
    redis = connect(settings.redis_url, socket_timeout=1.0, socket_connect_timeout=1.0)
    status = StatusSources(
        services=settings.ledger_status_services,
        own_readiness=ready,
        reader=lambda: storage.reader,
        broker=broker,
        redis=redis,
    )

    async def status_page() -> tuple[str, bytes]:
        snapshot = await status.snapshot()
        return "text/html; charset=utf-8", render_status_page(snapshot, settings.ledger_status_refresh_seconds).encode()

    async def status_json() -> tuple[str, bytes]:
        return "application/json", json.dumps((await status.snapshot()).as_json()).encode()

    ops = OpsServer(
        settings.ledger_http_host,
        settings.ledger_http_port,
        metrics.registry,
        ready,
        pages={"/status": status_page, "/status.json": status_json},
    )

    @broker.subscriber(LEDGER_QUERIES_QUEUE, channel=Channel(prefetch_count=QUERY_PREFETCH))
    async def on_query(message: RabbitMessage) -> LedgerReply:
        assert storage.reader is not None and storage.sql is not None, "queries are consumed once storage is open"
        return await answer_query(message.body, storage.reader, storage.sql, metrics, log)

    background: list[asyncio.Task[None]] = []

    async def start_storage_then_broker() -> None:
        # Consuming starts only once ClickHouse takes rows: until then events wait on the broker.
        await ops.start()
        await storage.open_when_available()
        await connect_when_available(broker, lambda: declare_topology(broker))
        batcher.start()

    async def after_start() -> None:
        # The event queues, consumed without FastStream's per-message path (see
        # `shared.rabbitmq.consume_raw`); the query subscriber above stays FastStream's.
        # One channel for the four: one run of delivery tags, so one multiple-ack a batch.
        channel = Channel(prefetch_count=settings.ledger_prefetch)
        for queue in EVENT_QUEUES:
            consumers.append(await consume_raw(broker, queue, channel, intake.receiver(queue)))
        background.append(
            asyncio.create_task(
                watch_queue_depths(
                    broker,
                    (LEDGER_ACCEPTED_QUEUE, LEDGER_OUTCOMES_QUEUE, LEDGER_RECEIPTS_QUEUE, LEDGER_INBOUND_QUEUE),
                    lambda name, depth: metrics.queue_depth.labels(name).set(depth),
                    settings.ledger_queue_poll_seconds,
                ),
                name="ledger-queue-depths",
            )
        )
        log.info(
            "ledger.started",
            database=settings.clickhouse_database,
            batch_rows=settings.ledger_batch_rows,
            batch_seconds=settings.ledger_batch_seconds,
        )

    async def stop_events() -> None:
        # Before the broker stops: no more deliveries, then the last batch is written and
        # acked on the still open channel; what cannot be written is handed back.
        for consumer in consumers:
            with contextlib.suppress(*SETTLE_ERRORS):
                await consumer.cancel()
        consumers.clear()
        await batcher.close(settings.ledger_shutdown_seconds)

    async def after_stop() -> None:
        for task in background:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await ops.stop()
        await redis.aclose()
        log.info("ledger.stopped")

    return FastStream(
        broker,
        on_startup=[start_storage_then_broker],
        after_startup=[after_start],
        on_shutdown=[stop_events],
        after_shutdown=[after_stop],
    )
