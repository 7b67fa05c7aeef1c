"""The receipt sink against the real Redis and RabbitMQ: matching, multipart aggregation,
a receipt before its record, an unmatched receipt kept."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from click.testing import CliRunner
from faststream.rabbit import RabbitBroker
from redis.asyncio import Redis

from cli.main import rsms
from services.dispatcher.carrier_reports import CarrierReceipt
from services.dispatcher.outbox import Outbox
from services.dispatcher.provider import Delivery, DeliveryStatus
from services.dispatcher.receipts import ReceiptSink
from services.dispatcher.receipts_store import RedisReceiptStore
from shared.contracts import ReceiptEvent, ReceiptStatus, UnmatchedReceipt
from shared.topology import (
    LEDGER_RECEIPTS_QUEUE,
    RECEIPTS_PENDING_QUEUE,
    RECEIPTS_UNMATCHED_QUEUE,
    declare_topology,
)
from tests.dispatcher.harness import make_job
from tests.support.queues import depth, drain

GRACE_SECONDS = 60.0


@pytest.fixture
async def sink(amqp_url: str, redis_url: str) -> AsyncIterator[ReceiptSink]:
    broker = RabbitBroker(amqp_url, logger=None)
    await broker.connect()
    await declare_topology(broker)
    outbox = Outbox(broker, timeout_seconds=5)
    await outbox.start()
    redis = Redis.from_url(redis_url, decode_responses=True)
    try:
        yield ReceiptSink(RedisReceiptStore(redis, ttl_seconds=3600), outbox, GRACE_SECONDS)
    finally:
        await redis.aclose()
        await broker.stop()


def receipt(carrier_id: str, status: ReceiptStatus, error: str | None = None, *, minute: int = 0) -> CarrierReceipt:
    done = datetime(2026, 11, 25, 10, minute, tzinfo=UTC)
    return CarrierReceipt(carrier_id, status, error, done, datetime.now(UTC))


async def published(amqp_url: str) -> list[ReceiptEvent]:
    return [ReceiptEvent.model_validate(m["body"]) for m in await drain(amqp_url, LEDGER_RECEIPTS_QUEUE.name)]


async def test_a_multipart_recipient_is_delivered_when_every_part_is(sink: ReceiptSink, amqp_url: str) -> None:
    job = make_job(["+4790000001", "+4790000002"])
    await sink.expect(
        job,
        job.recipients,
        [
            Delivery(DeliveryStatus.SENT, "r1", carrier_ids=("a0", "a1", "a2")),
            Delivery(DeliveryStatus.SENT, "r2", carrier_ids=("b0", "b1")),
        ],
    )
    for part in ("a2", "a0"):
        await sink.receipt(receipt(part, "delivered", minute=1))
    await sink.receipt(receipt("b1", "undelivered", "001", minute=2))
    assert {e.recipient: e.status for e in await published(amqp_url)} == {"+4790000002": "undelivered"}

    await sink.receipt(receipt("a1", "delivered", minute=3))  # the last part: now delivered
    await sink.receipt(receipt("a1", "delivered", minute=3))  # redelivered by the carrier: nothing new
    await sink.receipt(receipt("b0", "delivered", minute=4))  # failed stays failed
    [event] = await published(amqp_url)
    assert (event.message_id, event.project, event.recipient, event.status, event.final) == (
        job.message_id,
        job.project,
        "+4790000001",
        "delivered",
        True,
    )
    assert (event.provider_reference, event.occurred_at) == ("a1", datetime(2026, 11, 25, 10, 3, tzinfo=UTC))
    assert await published(amqp_url) == []


async def test_a_receipt_before_its_record_waits_on_the_broker_and_matches_later(
    sink: ReceiptSink, amqp_url: str
) -> None:
    job = make_job(["+4790000001"])
    await sink.receipt(receipt("early-1", "delivered"))
    assert await published(amqp_url) == []
    # A second later the delay queue hands it to the dispatcher's pending queue.
    [waiting_message] = await drain(amqp_url, RECEIPTS_PENDING_QUEUE.name, expect=1, wait=10)
    waiting = UnmatchedReceipt.model_validate(waiting_message["body"])
    assert (waiting.provider_reference, waiting.status) == ("early-1", "delivered")

    assert await sink.rematch(waiting) == "waiting"  # still unknown: round again
    [again] = await drain(amqp_url, RECEIPTS_PENDING_QUEUE.name, expect=1, wait=10)

    await sink.expect(job, job.recipients, [Delivery(DeliveryStatus.SENT, "r", carrier_ids=("early-1",))])
    assert await sink.rematch(UnmatchedReceipt.model_validate(again["body"])) == "matched"
    [event] = await published(amqp_url)
    assert (event.message_id, event.recipient, event.status) == (job.message_id, "+4790000001", "delivered")


async def test_a_receipt_nobody_matches_is_kept_for_an_operator(
    sink: ReceiptSink, amqp_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    await sink.receipt(receipt("never-sent", "expired", "027"))
    [message] = await drain(amqp_url, RECEIPTS_PENDING_QUEUE.name, expect=1, wait=10)
    waiting = UnmatchedReceipt.model_validate(message["body"])
    later = waiting.received_at + timedelta(seconds=GRACE_SECONDS + 1)
    assert await sink.rematch(waiting, now=later) == "unmatched"
    assert await depth(amqp_url, RECEIPTS_UNMATCHED_QUEUE.name) == 1

    monkeypatch.setenv("RSMS_AMQP_URL", amqp_url)
    # The CLI runs its own event loop: in a thread of its own, as in a terminal.
    listed = await asyncio.to_thread(CliRunner().invoke, rsms, ["receipts", "unmatched", "--json"])
    assert listed.exit_code == 0, listed.output
    [kept] = [json.loads(line) for line in listed.output.splitlines()]
    assert (kept["provider_reference"], kept["status"], kept["error_code"]) == ("never-sent", "expired", "027")
    table = await asyncio.to_thread(CliRunner().invoke, rsms, ["receipts", "unmatched"])
    assert "never-sent" in table.output and "expired" in table.output
    assert await depth(amqp_url, RECEIPTS_UNMATCHED_QUEUE.name) == 1  # listing took nothing
