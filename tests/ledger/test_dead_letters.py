"""`rsms ledger-dlq` on both kinds of ledger dead letter: an event the running ledger refused
(header `x-rsms-reason`) and one the broker dead-lettered at the delivery limit (a vhost
policy sets it to 20, as RabbitMQ 4 does by default). Listing 30 times loses none; replay
sends each back to its queue, the ledger records the good one once, and refuses the bad
one again (kept, not lost)."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from typing import Any

import aio_pika
from click.testing import CliRunner

from cli.ledger_dlq import ledger_dlq, read_entry
from shared.topology import (
    LEDGER_ACCEPTED_QUEUE,
    LEDGER_DEAD_LETTER_QUEUE,
    LEDGER_INBOUND_QUEUE,
    LEDGER_OUTCOMES_QUEUE,
    LEDGER_RECEIPTS_QUEUE,
)
from tests.ledger.support import (
    eventually,
    ledger_settings,
    make_inbound,
    make_job,
    make_outcome,
    make_receipt,
    numbers,
    publish_job,
    publisher,
    running_ledger,
    scalar,
)
from tests.support.queues import depth

DELIVERY_LIMIT_POLICY = '{"delivery-limit": 20}'
POLICY_APPLIES_TO = "queues"  # RabbitMQ 3.10 has no `quorum_queues` (see tests/cli/test_dlq.py)
REFUSED = b'{"schema_version": 7, "event_id": "e-7", "outcomes": []}'


def test_each_kind_of_event_replays_to_the_queue_it_is_consumed_from() -> None:
    job = make_job(recipients=numbers(1))
    bodies = {
        LEDGER_ACCEPTED_QUEUE.name: (job.model_dump_json(), str(job.message_id)),
        LEDGER_OUTCOMES_QUEUE.name: (make_outcome(job).model_dump_json(), str(make_outcome(job).event_id)),
        LEDGER_RECEIPTS_QUEUE.name: (make_receipt(job, job.recipients[0], "delivered").model_dump_json(), None),
        LEDGER_INBOUND_QUEUE.name: (make_inbound("acme", "Yes").model_dump_json(), None),
    }
    for queue, (body, event_id) in bodies.items():
        entry = read_entry(body.encode(), {"x-rsms-reason": "a schema version this ledger does not know"})
        assert (entry.reason, entry.replay_to) == ("refused", queue), queue
        assert entry.detail == "a schema version this ledger does not know"
        if event_id:
            assert entry.event_id == event_id


def test_a_broker_dead_letter_replays_to_the_queue_x_death_names() -> None:
    at = datetime(2026, 12, 4, 9, 0, tzinfo=UTC)
    body = make_outcome(make_job(recipients=numbers(1))).model_dump_json().encode()
    headers: dict[str, Any] = {
        "x-death": [{"reason": "delivery_limit", "queue": LEDGER_OUTCOMES_QUEUE.name, "count": 1, "time": at}]
    }
    entry = read_entry(body, headers)
    assert (entry.reason, entry.kind, entry.replay_to, entry.dead_lettered_at) == (
        "delivery_limit",
        "outcome",
        LEDGER_OUTCOMES_QUEUE.name,
        at,
    )
    # A queue that is not the ledger's is never a replay target, whatever `x-death` says.
    headers["x-death"][0]["queue"] = "rsms.dispatch.jobs"
    assert read_entry(body, headers).replay_to is None


def test_a_body_of_no_known_kind_is_not_replayable() -> None:
    for body in (b"{not json", b"[1, 2]", b'{"schema_version": 1}'):
        assert read_entry(body, {"x-rsms-reason": "malformed"}).replay_to is None
    assert read_entry(b"{}", {}).reason == "unreadable"


async def _cli(amqp_url: str, *args: str) -> str:
    result = await asyncio.to_thread(CliRunner().invoke, ledger_dlq, list(args), env={"RSMS_AMQP_URL": amqp_url})
    assert result.exit_code == 0, result.output
    return result.output


async def _dead_letter_by_the_broker(amqp_url: str, body: bytes, queue_name: str) -> None:
    """Requeues `body` on `queue_name` until the broker dead-letters it (the policy's 20)."""
    connection = await aio_pika.connect(amqp_url)
    try:
        channel = await connection.channel(publisher_confirms=True)
        await channel.default_exchange.publish(aio_pika.Message(body, delivery_mode=2), routing_key=queue_name)
        queue = await channel.get_queue(queue_name)
        deliveries = 0
        while (message := await queue.get(no_ack=False, fail=False)) is not None:
            deliveries += 1
            await message.nack(requeue=True)
        assert deliveries == 21
    finally:
        await connection.close()


async def test_listing_loses_nothing_and_replay_records_the_good_event_once_and_keeps_the_bad_one(
    amqp_url, clickhouse, rabbit_admin
) -> None:
    settings = ledger_settings(amqp_url, clickhouse.dsn, clickhouse.database)
    job = make_job(recipients=numbers(3))
    outcome = make_outcome(job)
    table = f"{clickhouse.database}.sms_outcomes"
    async with publisher(amqp_url) as broker:  # the topology, no ledger yet
        rabbit_admin.set_policy(amqp_url, "limit-20", "^rsms\\.", DELIVERY_LIMIT_POLICY, POLICY_APPLIES_TO)
        await _dead_letter_by_the_broker(amqp_url, outcome.model_dump_json().encode(), LEDGER_OUTCOMES_QUEUE.name)
        # At-least-once dead-lettering reaches the target queue a moment after the source
        # lets go: wait, so the broker's dead letter is first in the queue, as listed below.
        await eventually(lambda: depth(amqp_url, LEDGER_DEAD_LETTER_QUEUE.name), what="the broker's dead letter")
        async with running_ledger(settings):
            await publish_job(broker, job)
            connection = await aio_pika.connect(amqp_url)
            async with connection:
                channel = await connection.channel(publisher_confirms=True)
                exchange = await channel.get_exchange("rsms.outcomes")
                await exchange.publish(aio_pika.Message(REFUSED, delivery_mode=2), routing_key="")
            await eventually(lambda: depth(amqp_url, LEDGER_DEAD_LETTER_QUEUE.name), what="the refused event")

            for _ in range(30):
                listed = json.loads(await _cli(amqp_url, "list", "--json"))
            assert await depth(amqp_url, LEDGER_DEAD_LETTER_QUEUE.name) == 2
            # Each listing takes the messages off and puts copies back: what it keeps is
            # every message, not their order (a busy broker has swapped the two).
            assert sorted((r["reason"], r["kind"], r["id"], r["replays_to"]) for r in listed) == [
                ("delivery_limit", "outcome", str(outcome.event_id), LEDGER_OUTCOMES_QUEUE.name),
                ("refused", "outcome", "e-7", LEDGER_OUTCOMES_QUEUE.name),
            ]
            [refused] = [r for r in listed if r["reason"] == "refused"]
            assert "outcome event" in refused["detail"]  # the ledger's own reason
            assert "delivery_limit" in await _cli(amqp_url, "list")  # the table people read

            client = clickhouse.client()
            assert scalar(client, f"SELECT count() FROM {table}") == 0
            assert "Replayed 2 event(s)." in await _cli(amqp_url, "replay")
            await eventually(
                lambda: scalar(client, f"SELECT count() FROM {table} FINAL") == 3, what="the replayed outcome's rows"
            )
            # The refused one was refused again: back on the dead-letter queue, not lost.
            await eventually(lambda: depth(amqp_url, LEDGER_DEAD_LETTER_QUEUE.name), what="the refused event again")
            [again] = json.loads(await _cli(amqp_url, "list", "--json"))
            assert (again["reason"], again["id"]) == ("refused", "e-7")
    assert scalar(clickhouse.client(), f"SELECT count() FROM {table} FINAL") == 3
