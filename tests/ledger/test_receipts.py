"""Delivery receipts in the ledger: each status change recorded once with its time, shown
per recipient in the message status, and billing unchanged (a recipient is billed on submit)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from shared.ledger_queries import LedgerQueries, message_status_body
from tests.ledger.support import (
    PRICE,
    eventually,
    ledger_settings,
    make_job,
    make_outcome,
    make_receipt,
    numbers,
    publish_job,
    publish_outcome,
    publish_receipt,
    publisher,
    running_ledger,
    scalar,
)
from tests.support.queues import depth

TODAY = datetime.now(UTC).date()


async def test_receipts_are_recorded_once_each_and_leave_billing_unchanged(amqp_url, clickhouse):
    settings = ledger_settings(amqp_url, clickhouse.dsn, clickhouse.database)
    db, client = clickhouse.database, clickhouse.client()
    first, second, third = numbers(3)
    job = make_job(recipients=[first, second, third], segments=2)
    sent_at = datetime.now(UTC).replace(microsecond=0)
    accepted = make_receipt(job, first, "accepted", occurred_at=sent_at + timedelta(seconds=1))
    delivered = make_receipt(job, first, "delivered", occurred_at=sent_at + timedelta(seconds=5))
    undelivered = make_receipt(job, second, "undelivered", error_code="001", occurred_at=sent_at + timedelta(seconds=3))
    async with running_ledger(settings), publisher(amqp_url) as broker:
        queries = LedgerQueries(broker, timeout=10)
        await publish_job(broker, job)
        await publish_outcome(broker, make_outcome(job, status="sent"))
        await eventually(lambda: scalar(client, f"SELECT count() FROM {db}.sms_outcomes") == 3, what="outcomes")
        billed_before = await queries.usage("acme", TODAY, TODAY, "day")

        # Out of order (final before intermediate) and every event twice, as a redelivery would.
        for event in (delivered, undelivered, accepted, delivered, undelivered, accepted):
            await publish_receipt(broker, event)
        await eventually(
            lambda: scalar(client, f"SELECT uniqExact(event_id) FROM {db}.sms_receipts") == 3, what="receipt rows"
        )
        await eventually(lambda: _drained(amqp_url), what="every receipt taken off the queue")

        status = await queries.message_status("acme", job.message_id)
        by_recipient = {row.recipient: row for row in status.recipients}
        assert (by_recipient[first].delivery_status, by_recipient[first].delivery_updated_at) == (
            "delivered",
            sent_at + timedelta(seconds=5),
        )
        assert (by_recipient[second].delivery_status, by_recipient[second].delivery_error) == ("undelivered", "001")
        assert by_recipient[third].delivery_status is None  # no receipt yet: still just sent
        assert {row.status for row in status.recipients} == {"sent"}

        body = message_status_body(status)["data"]
        rows = {row["recipient"]: row for row in body["recipients"]}
        assert rows[first]["deliveryStatus"] == "delivered"
        assert rows[first]["deliveryUpdatedAt"] == (sent_at + timedelta(seconds=5)).isoformat(
            timespec="milliseconds"
        ).replace("+00:00", "Z")
        assert (rows[second]["deliveryStatus"], rows[second]["deliveryError"]) == ("undelivered", "001")
        assert (rows[third]["deliveryStatus"], rows[third]["deliveryUpdatedAt"]) == (None, None)
        assert (body["summary"]["delivered"], body["summary"]["deliveryFailed"]) == (1, 1)

        # Billed on submit: the failed delivery is billed like the others, and nothing changed.
        billed_after = await queries.usage("acme", TODAY, TODAY, "day")
        assert billed_after == billed_before
        assert [(r.recipients, r.segments, r.cost) for r in billed_after.rows] == [(3, 6, PRICE * 6)]
        assert status.cost == PRICE * 6
    assert scalar(client, f"SELECT count() FROM {db}.sms_receipts FINAL") == 3
    history = client.query(
        f"SELECT recipient, status, final, occurred_at FROM {db}.sms_receipts FINAL ORDER BY occurred_at"
    ).result_rows
    assert [(r, s, f) for r, s, f, _ in history] == [
        (first, "accepted", False),
        (second, "undelivered", True),
        (first, "delivered", True),
    ]


async def test_an_unreadable_receipt_is_dead_lettered_not_retried(amqp_url, clickhouse):
    settings = ledger_settings(amqp_url, clickhouse.dsn, clickhouse.database)
    async with running_ledger(settings), publisher(amqp_url) as broker:
        await broker.publish(b'{"schema_version": 1, "status": "delivered"}', exchange="rsms.receipts", persist=True)
        await eventually(lambda: _dead(amqp_url), what="the receipt in the ledger's dead letters")


async def _drained(amqp_url: str) -> bool:
    return await depth(amqp_url, "rsms.ledger.receipts") == 0


async def _dead(amqp_url: str) -> bool:
    return await depth(amqp_url, "rsms.ledger.dead") == 1
