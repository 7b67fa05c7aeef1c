"""`rsms dlq` on both kinds of dead letter: the dispatcher's give-ups and the jobs the
broker dead-lettered at the delivery limit, on a vhost where a policy sets that limit to 20
(as RabbitMQ 4 does by default)."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime

import aio_pika
from click.testing import CliRunner

from cli.dlq import dlq, read_entry
from shared.contracts import DeadLetter, SmsJob, SmsJobBatch
from shared.topology import DEAD_LETTER_QUEUE, DISPATCH_QUEUE
from tests.dispatcher.harness import declare, make_job, numbers
from tests.support.queues import depth

DELIVERY_LIMIT_POLICY = '{"delivery-limit": 20}'
# RabbitMQ 3.13+ has `--apply-to quorum_queues`; 3.10 only `queues` (the limit acts on
# quorum queues alone either way).
POLICY_APPLIES_TO = "queues"


def _give_up(job: SmsJob) -> DeadLetter:
    return DeadLetter(
        reason="attempts_exhausted",
        detail="provider kept failing",
        dead_lettered_at=datetime(2026, 12, 1, 9, 0, tzinfo=UTC),
        message_id=job.message_id,
        attempts=5,
        job=job,
    )


def test_a_give_up_replays_with_attempts_reset() -> None:
    job = make_job(numbers(3)).model_copy(update={"attempt": 5})
    entry = read_entry(_give_up(job).model_dump_json().encode(), {})
    assert (entry.reason, entry.message_id, entry.attempts, entry.recipients) == (
        "attempts_exhausted",
        job.message_id,
        5,
        3,
    )
    assert entry.replay_body is not None
    replayed = SmsJob.model_validate_json(entry.replay_body)
    assert (replayed.attempt, replayed.replay) == (1, 1)


def test_a_job_the_broker_dead_lettered_takes_the_latest_reason_and_replays_as_it_was() -> None:
    job = make_job(numbers(2)).model_copy(update={"attempt": 3})
    body = job.model_dump_json().encode()
    at = datetime(2026, 12, 1, 9, 30, tzinfo=UTC)
    headers = {
        # Most recent first; the job came through a retry delay queue before.
        "x-death": [
            {"reason": "delivery_limit", "queue": DISPATCH_QUEUE.name, "count": 1, "time": at},
            {"reason": "expired", "queue": "rsms.dispatch.retry.5000ms", "count": 2, "time": at},
        ],
        "x-first-death-reason": "expired",
    }
    entry = read_entry(body, headers)
    assert (entry.reason, entry.message_id, entry.attempts, entry.recipients) == (
        "delivery_limit",
        job.message_id,
        3,
        2,
    )
    assert entry.dead_lettered_at == at
    assert DISPATCH_QUEUE.name in entry.detail
    assert entry.replay_body == body


def test_a_job_batch_the_broker_dead_lettered_replays_as_it_was() -> None:
    jobs = [make_job(numbers(2)), make_job(numbers(3, start=10))]
    body = SmsJobBatch(jobs=jobs).model_dump_json().encode()
    headers = {"x-death": [{"reason": "delivery_limit", "queue": DISPATCH_QUEUE.name, "count": 1}]}
    entry = read_entry(body, headers)
    assert (entry.reason, entry.message_id, entry.attempts, entry.recipients) == ("delivery_limit", None, 1, 5)
    assert "a batch of 2 jobs" in entry.detail and entry.by_broker
    assert entry.replay_body == body


def test_a_body_neither_kind_is_unreadable_and_not_replayable() -> None:
    for headers in ({}, {"x-death": [{"reason": "delivery_limit"}]}):
        entry = read_entry(b"{not json", headers)
        assert entry.replay_body is None
    assert read_entry(b"{not json", {}).reason == "unreadable"


async def _cli(amqp_url: str, *args: str) -> str:
    result = await asyncio.to_thread(CliRunner().invoke, dlq, list(args), env={"RSMS_AMQP_URL": amqp_url})
    assert result.exit_code == 0, result.output
    return result.output


async def _dead_letter_by_the_broker(amqp_url: str, job: SmsJob) -> None:
    """Requeues `job` on the dispatch queue until the broker dead-letters it (limit 20)."""
    connection = await aio_pika.connect(amqp_url)
    try:
        channel = await connection.channel(publisher_confirms=True)
        body = job.model_dump_json().encode()
        await channel.default_exchange.publish(aio_pika.Message(body), routing_key=DISPATCH_QUEUE.name)
        queue = await channel.get_queue(DISPATCH_QUEUE.name)
        deliveries = 0
        while (message := await queue.get(no_ack=False, fail=False)) is not None:
            deliveries += 1
            await message.nack(requeue=True)
        assert deliveries == 21  # the policy's 20, not the queue's own 50: the smaller wins
    finally:
        await connection.close()


async def test_listing_30_times_under_a_delivery_limit_of_20_loses_nothing_and_replay_takes_both_kinds(
    amqp_url, rabbit_admin
) -> None:
    await declare(amqp_url)
    rabbit_admin.set_policy(amqp_url, "limit-20", "^rsms\\.", DELIVERY_LIMIT_POLICY, POLICY_APPLIES_TO)
    raw_job = make_job(numbers(2, start=10)).model_copy(update={"attempt": 2})
    await _dead_letter_by_the_broker(amqp_url, raw_job)
    given_up = make_job(numbers(3, start=20))
    connection = await aio_pika.connect(amqp_url)
    try:
        channel = await connection.channel(publisher_confirms=True)
        message = aio_pika.Message(_give_up(given_up).model_dump_json().encode(), delivery_mode=2)
        await channel.default_exchange.publish(message, routing_key=DEAD_LETTER_QUEUE.name)
    finally:
        await connection.close()

    for _ in range(30):
        listed = json.loads(await _cli(amqp_url, "list", "--json"))
    assert await depth(amqp_url, DEAD_LETTER_QUEUE.name) == 2
    # Oldest first, still: listing puts each back at the tail in order.
    assert [(r["reason"], r["message_id"]) for r in listed] == [
        ("delivery_limit", str(raw_job.message_id)),
        ("attempts_exhausted", str(given_up.message_id)),
    ]
    assert listed[0]["attempts"] == 2 and listed[0]["recipients"] == 2

    assert "Replayed 2 job(s), 5 recipient(s)." in await _cli(amqp_url, "replay")
    assert await depth(amqp_url, DEAD_LETTER_QUEUE.name) == 0
    connection = await aio_pika.connect(amqp_url)
    try:
        channel = await connection.channel()
        queue = await channel.get_queue(DISPATCH_QUEUE.name)
        replayed = {}
        while (message := await queue.get(fail=False)) is not None:
            body = json.loads(message.body)
            replayed[body["message_id"]] = (body, message.headers or {})
    finally:
        await connection.close()
    raw, raw_headers = replayed[str(raw_job.message_id)]
    assert raw == json.loads(raw_job.model_dump_json())  # as it was: same attempt, same replay
    # `x-death` kept, so the dispatcher treats it as delivered before (job_reader.delivered_before).
    assert raw_headers["x-death"][0]["reason"] == "delivery_limit"
    given_up_body, given_up_headers = replayed[str(given_up.message_id)]
    assert (given_up_body["attempt"], given_up_body["replay"]) == (1, 1)
    assert "x-death" not in given_up_headers


async def test_listing_unmatched_receipts_30_times_under_a_delivery_limit_of_20_loses_none(
    amqp_url, rabbit_admin
) -> None:
    import uuid

    from cli.receipts import peek_unmatched
    from shared.contracts import UnmatchedReceipt
    from shared.topology import RECEIPTS_UNMATCHED_QUEUE

    await declare(amqp_url)
    rabbit_admin.set_policy(amqp_url, "limit-20", "^rsms\\.", DELIVERY_LIMIT_POLICY, POLICY_APPLIES_TO)
    kept = [
        UnmatchedReceipt(
            event_id=uuid.uuid4(),
            provider_reference=f"carrier-{i}",
            status="delivered",
            received_at=datetime(2026, 12, 1, 9, i, tzinfo=UTC),
            reason="no part sent with this carrier id",
        )
        for i in range(3)
    ]
    connection = await aio_pika.connect(amqp_url)
    try:
        channel = await connection.channel(publisher_confirms=True)
        for receipt in kept:
            message = aio_pika.Message(receipt.model_dump_json().encode(), delivery_mode=2)
            await channel.default_exchange.publish(message, routing_key=RECEIPTS_UNMATCHED_QUEUE.name)
    finally:
        await connection.close()

    for _ in range(30):
        found = await peek_unmatched(amqp_url, limit=2)
    assert found == kept[:2]  # oldest first, still
    assert await depth(amqp_url, RECEIPTS_UNMATCHED_QUEUE.name) == 3
