"""Builds the ledger: the one place that wires broker, ClickHouse, batcher and probes."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from typing import Any

from faststream import AckPolicy, FastStream
from faststream.message import StreamMessage
from faststream.rabbit import Channel
from faststream.rabbit.annotations import RabbitMessage
from redis.asyncio import Redis

from services.ledger.batcher import RowBatcher
from services.ledger.clickhouse import LedgerWriter, StorageUnavailable, answers, open_client
from services.ledger.handlers import answer_query, record_event
from services.ledger.metrics import LedgerMetrics
from services.ledger.reads import LedgerReader
from services.ledger.rows import RowChunk, inbound_rows, outcome_rows, receipt_rows, request_rows
from services.ledger.settings import LedgerSettings
from services.ledger.sql_passthrough import SqlPassthrough
from services.ledger.status import StatusSources
from services.ledger.status_page import render_status_page
from shared.broker_connection import connect_when_available
from shared.contracts import LedgerReply
from shared.log import get_logger
from shared.ops_server import OpsServer
from shared.queue_depths import watch_queue_depths
from shared.rabbitmq import PublishHealth, broker_ready, cluster_broker
from shared.topology import (
    ACCEPTED_EXCHANGE,
    INBOUND_EXCHANGE,
    LEDGER_ACCEPTED_QUEUE,
    LEDGER_DEAD_LETTER_QUEUE,
    LEDGER_INBOUND_QUEUE,
    LEDGER_OUTCOMES_QUEUE,
    LEDGER_QUERIES_QUEUE,
    LEDGER_RECEIPTS_QUEUE,
    OUTCOMES_EXCHANGE,
    RECEIPTS_EXCHANGE,
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
        writer = LedgerWriter(write_client, database)
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


async def keep_body_undecoded(message: StreamMessage[Any]) -> bytes:
    """Handlers decode event bodies themselves (`rows.py`); FastStream's own JSON parse of a
    1,000-recipient body would cost as much as the insert."""
    return message.body


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
    batcher = RowBatcher(
        storage.write,
        max_rows=settings.ledger_batch_rows,
        max_messages=settings.ledger_batch_messages,
        max_seconds=settings.ledger_batch_seconds,
        retry_initial_seconds=settings.ledger_retry_initial_seconds,
        retry_max_seconds=settings.ledger_retry_max_seconds,
        metrics=metrics,
        logger=log,
    )

    async def ready() -> bool:
        return (
            storage.writer is not None
            and batcher.storage_healthy
            and await broker_ready(broker, publishes)
            and await storage.answers()
        )

    # The status page's only use of Redis: the provider state the dispatcher keeps there.
    redis = Redis.from_url(settings.redis_url, socket_timeout=1.0, socket_connect_timeout=1.0)
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

    async def dead_letter(body: bytes, reason: str) -> None:
        await broker.publish(
            body,
            queue=LEDGER_DEAD_LETTER_QUEUE.name,
            persist=True,
            headers={"x-rsms-reason": reason},
            content_type="application/json",
        )

    event_subscriber: dict[str, Any] = {
        "ack_policy": AckPolicy.MANUAL,
        "no_reply": True,
        "decoder": keep_body_undecoded,
    }

    @broker.subscriber(
        LEDGER_ACCEPTED_QUEUE,
        ACCEPTED_EXCHANGE,
        channel=Channel(prefetch_count=settings.ledger_prefetch),
        **event_subscriber,
    )
    async def on_accepted(message: RabbitMessage) -> None:
        await record_event(
            message,
            queue=LEDGER_ACCEPTED_QUEUE.name,
            decode=request_rows,
            batcher=batcher,
            dead_letter=dead_letter,
            metrics=metrics,
            log=log,
        )

    @broker.subscriber(
        LEDGER_OUTCOMES_QUEUE,
        OUTCOMES_EXCHANGE,
        channel=Channel(prefetch_count=settings.ledger_prefetch),
        **event_subscriber,
    )
    async def on_outcome(message: RabbitMessage) -> None:
        await record_event(
            message,
            queue=LEDGER_OUTCOMES_QUEUE.name,
            decode=outcome_rows,
            batcher=batcher,
            dead_letter=dead_letter,
            metrics=metrics,
            log=log,
        )

    @broker.subscriber(
        LEDGER_RECEIPTS_QUEUE,
        RECEIPTS_EXCHANGE,
        channel=Channel(prefetch_count=settings.ledger_prefetch),
        **event_subscriber,
    )
    async def on_receipt(message: RabbitMessage) -> None:
        await record_event(
            message,
            queue=LEDGER_RECEIPTS_QUEUE.name,
            decode=receipt_rows,
            batcher=batcher,
            dead_letter=dead_letter,
            metrics=metrics,
            log=log,
        )

    @broker.subscriber(
        LEDGER_INBOUND_QUEUE,
        INBOUND_EXCHANGE,
        channel=Channel(prefetch_count=settings.ledger_prefetch),
        **event_subscriber,
    )
    async def on_inbound(message: RabbitMessage) -> None:
        await record_event(
            message,
            queue=LEDGER_INBOUND_QUEUE.name,
            decode=inbound_rows,
            batcher=batcher,
            dead_letter=dead_letter,
            metrics=metrics,
            log=log,
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

    async def after_stop() -> None:
        # The broker has stopped consuming and waited for in-flight handlers; whatever is
        # still held could not be written and goes back to the queue with the connection.
        await batcher.close(settings.ledger_shutdown_seconds)
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
        after_shutdown=[after_stop],
    )
