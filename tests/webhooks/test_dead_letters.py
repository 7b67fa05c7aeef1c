"""`rsms webhooks list|replay` on the quorum dead-letter queue, under a delivery limit of 20
set by policy (as RabbitMQ 4 does by default): listing 30 times loses nothing, since it
reads by confirmed copy and never requeues; replay sends a give-up back to the retries queue
and an event the broker dead-lettered back to the queue it came from, and the sender
delivers both."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime
from pathlib import Path

import aio_pika
from click.testing import CliRunner, Result

from cli.main import rsms
from cli.webhooks import read_entry
from services.webhooks.events import receipt_events
from shared.contracts import WebhookDeadLetter, WebhookDelivery
from shared.topology import WEBHOOK_DEAD_LETTER_QUEUE, WEBHOOK_OUTCOMES_QUEUE, WEBHOOK_RETRIES_QUEUE
from tests.support.queues import depth
from tests.webhooks.receiver import Receiver
from tests.webhooks.support import outcome, publisher, receipt, running_sender, sender_settings, write_accounts

DELIVERY_LIMIT_POLICY = '{"delivery-limit": 20}'
POLICY_APPLIES_TO = "queues"  # RabbitMQ 3.10 has no `quorum_queues` (see tests/cli/test_dlq.py)
SECRETS = {"acme": "whsec_test_secret_of_acme", "other": "whsec_test_secret_of_other"}


def _give_up(project: str) -> WebhookDeadLetter:
    [event] = receipt_events(receipt(project, "+4790000007", "delivered"))
    delivery = WebhookDelivery(
        delivery_id=uuid.uuid4(),
        project=project,
        events=[event],
        attempts=3,
        last_error="HTTP 500",
        created_at=datetime.now(UTC),
    )
    return WebhookDeadLetter(
        reason="attempts_exhausted",
        detail="HTTP 500",
        dead_lettered_at=datetime.now(UTC),
        project=project,
        delivery=delivery,
    )


def test_a_broker_dead_letter_names_its_project_and_replays_to_its_own_queue_only() -> None:
    body = outcome("acme", {"+4790000001": "sent"}).model_dump_json().encode()
    death = {"reason": "delivery_limit", "queue": WEBHOOK_OUTCOMES_QUEUE.name, "count": 1}
    entry = read_entry(body, {"x-death": [death]})
    assert (entry.reason, entry.project, entry.replay_to, entry.replay_body) == (
        "delivery_limit",
        "acme",
        WEBHOOK_OUTCOMES_QUEUE.name,
        None,  # as it was
    )
    assert read_entry(body, {"x-death": [death | {"queue": "rsms.dispatch.jobs"}]}).replay_to is None
    assert read_entry(b"{not json", {}).reason == "unreadable"


def test_a_give_up_replays_to_the_retries_queue_with_its_attempts_reset() -> None:
    entry = read_entry(_give_up("acme").model_dump_json().encode(), {})
    assert (entry.reason, entry.project, entry.attempts, entry.replay_to) == (
        "attempts_exhausted",
        "acme",
        3,
        WEBHOOK_RETRIES_QUEUE.name,
    )
    assert entry.replay_body is not None
    replayed = WebhookDelivery.model_validate_json(entry.replay_body)
    assert (replayed.attempts, replayed.last_error, replayed.replay) == (0, None, 1)


async def _cli(amqp_url: str, *args: str) -> Result:
    result = await asyncio.to_thread(CliRunner(env={"RSMS_AMQP_URL": amqp_url}).invoke, rsms, list(args))
    assert result.exit_code == 0, result.output
    return result


async def _dead_letter_by_the_broker(amqp_url: str, body: bytes) -> None:
    """Requeues `body` on the sender's outcomes queue until the broker dead-letters it."""
    connection = await aio_pika.connect(amqp_url)
    try:
        channel = await connection.channel(publisher_confirms=True)
        await channel.default_exchange.publish(
            aio_pika.Message(body, delivery_mode=2), routing_key=WEBHOOK_OUTCOMES_QUEUE.name
        )
        queue = await channel.get_queue(WEBHOOK_OUTCOMES_QUEUE.name)
        deliveries = 0
        while (message := await queue.get(no_ack=False, fail=False)) is not None:
            deliveries += 1
            await message.nack(requeue=True)
        assert deliveries == 21  # the policy's 20, not the queue's own 50: the smaller wins
    finally:
        await connection.close()


async def test_listing_30_times_loses_nothing_and_replay_delivers_both_kinds(
    amqp_url: str, accounts_file: Path, rabbit_admin
) -> None:
    stuck = outcome("acme", {"+4790000001": "sent"})
    async with publisher(amqp_url):  # the sender's queues, as its first start left them
        pass
    rabbit_admin.set_policy(amqp_url, "limit-20", "^rsms\\.", DELIVERY_LIMIT_POLICY, POLICY_APPLIES_TO)
    await _dead_letter_by_the_broker(amqp_url, stuck.model_dump_json().encode())
    connection = await aio_pika.connect(amqp_url)
    try:
        channel = await connection.channel(publisher_confirms=True)
        for project in ("acme", "other"):
            body = _give_up(project).model_dump_json().encode()
            await channel.default_exchange.publish(
                aio_pika.Message(body, delivery_mode=2), routing_key=WEBHOOK_DEAD_LETTER_QUEUE.name
            )
    finally:
        await connection.close()

    for _ in range(30):
        listed = json.loads((await _cli(amqp_url, "webhooks", "list", "--json")).output)
    assert await depth(amqp_url, WEBHOOK_DEAD_LETTER_QUEUE.name) == 3
    assert [(r["project"], r["reason"]) for r in listed] == [  # oldest first, still
        ("acme", "delivery_limit"),
        ("acme", "attempts_exhausted"),
        ("other", "attempts_exhausted"),
    ]

    receiver = Receiver(SECRETS)
    await receiver.start()
    try:
        write_accounts(accounts_file, {p: (receiver.url(p), secret) for p, secret in SECRETS.items()})
        async with running_sender(sender_settings(amqp_url, accounts_file)):
            replayed = await _cli(amqp_url, "webhooks", "replay", "--project", "acme")
            assert "Replayed 2 delivery(ies), 1 event(s)." in replayed.output

            async def both_delivered() -> bool:
                return len(receiver.events("acme")) >= 2

            deadline = asyncio.get_running_loop().time() + 30
            while not await both_delivered():
                assert asyncio.get_running_loop().time() < deadline, "the replayed deliveries never arrived"
                await asyncio.sleep(0.05)
    finally:
        await receiver.stop()
    delivered = {(e["type"], e["recipient"]) for e in receiver.events("acme")}
    assert delivered == {("message.sent", "+4790000001"), ("message.delivered", "+4790000007")}
    assert receiver.events("other") == [] and receiver.rejected == []
    # The other project's dead letter is still there; nothing else is.
    [left] = json.loads((await _cli(amqp_url, "webhooks", "list", "--json")).output)
    assert (left["project"], left["reason"]) == ("other", "attempts_exhausted")
