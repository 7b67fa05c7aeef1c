"""Events of all four kinds through the real broker into chDB, consumed in batches: every
row once, and each written batch settled by one multiple-ack for all four queues."""

from __future__ import annotations

import json

import services.ledger.intake as intake_module
from services.ledger.app import build_app
from services.ledger.metrics import LedgerMetrics
from shared.topology import OUTCOMES_EXCHANGE
from tests.ledger.support import (
    eventually,
    ledger_settings,
    make_inbound,
    make_job,
    make_outcome,
    make_receipt,
    numbers,
    publish_inbound,
    publish_job,
    publish_outcome,
    publish_receipt,
    publisher,
    scalar,
)
from tests.support.queues import depth, drain

EVENT_QUEUES = ("rsms.ledger.accepted", "rsms.ledger.outcomes", "rsms.ledger.receipts", "rsms.ledger.inbound")


async def test_events_of_every_kind_land_once_and_each_batch_is_settled_by_one_multiple_ack(
    amqp_url, clickhouse, monkeypatch
):
    frames: list[tuple[int, bool]] = []
    send_ack = intake_module.ack_on_channel

    async def recording_ack(channel, tag: int, *, multiple: bool) -> None:
        frames.append((tag, multiple))
        await send_ack(channel, tag, multiple=multiple)

    monkeypatch.setattr(intake_module, "ack_on_channel", recording_ack)
    # Batches full at 40 deliveries (half the prefetch), across the four queues.
    settings = ledger_settings(amqp_url, clickhouse.dsn, clickhouse.database, ledger_prefetch=80)
    db, client = clickhouse.database, clickhouse.client()
    count = 50
    jobs = [make_job(recipients=numbers(2, start=40_000_000 + 10 * i)) for i in range(count)]
    async with publisher(amqp_url) as broker:
        # A backlog first, so the batches fill.
        for i, job in enumerate(jobs):
            await publish_job(broker, job)
            await publish_outcome(broker, make_outcome(job))
            await publish_receipt(broker, make_receipt(job, job.recipients[0], "delivered"))
            await publish_inbound(broker, make_inbound("acme", f"reply {i}"))
        # One event the ledger cannot record: dead-lettered, and acked with its batch.
        await broker.publish(json.dumps({"schema_version": 99}).encode(), exchange=OUTCOMES_EXCHANGE, persist=True)
        metrics = LedgerMetrics()
        app = build_app(settings, metrics)
        await app.start()
        try:
            await eventually(
                lambda: _counts(client, db) == (count, 2 * count, count, count),
                timeout=60,
                what="every row",
            )
            await eventually(lambda: _dead_letters(amqp_url, 1), timeout=30, what="the rejected event dead-lettered")
            await eventually(lambda: frames and _all_acked(metrics, 4 * count + 1), timeout=30, what="all settled")
        finally:
            await app.stop()

    # Stopped: anything not acked would be back in its queue now.
    for queue in EVENT_QUEUES:
        assert await depth(amqp_url, queue) == 0, f"{queue} has unacked events back"
    assert _counts(client, db) == (count, 2 * count, count, count), "every row exactly once"
    batches = metrics.registry.get_sample_value("rsms_ledger_batch_messages_count")
    # A batch fills past 40 while the one before it is written: a few batches, not one.
    assert batches is not None and batches >= 2
    assert len(frames) == batches, f"{len(frames)} ack frames for {batches:.0f} batches"
    assert all(multiple for _, multiple in frames)
    assert [tag for tag, _ in frames] == sorted(tag for tag, _ in frames)
    assert frames[-1][0] == 4 * count + 1, "the last multiple-ack reaches the last delivery on the channel"
    [dead] = await drain(amqp_url, "rsms.ledger.dead", expect=1)
    assert dead["body"] == {"schema_version": 99}


def _counts(client, db: str) -> tuple[int, int, int, int]:
    return tuple(  # type: ignore[return-value]
        scalar(client, f"SELECT count() FROM {db}.{table}")
        for table in ("sms_requests", "sms_outcomes", "sms_receipts", "sms_inbound")
    )


async def _dead_letters(amqp_url: str, expected: int) -> bool:
    return await depth(amqp_url, "rsms.ledger.dead") == expected


def _all_acked(metrics: LedgerMetrics, deliveries: int) -> bool:
    messages = metrics.registry.get_sample_value("rsms_ledger_batch_messages_sum") or 0
    return messages == deliveries
