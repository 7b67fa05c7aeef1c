"""The queue arguments: every queue is a quorum queue (none lives on one node only), and no
consumed queue can drop a message at a delivery limit."""

from __future__ import annotations

from typing import Any

from faststream.rabbit import RabbitQueue
from hypothesis import given
from hypothesis import strategies as st

from shared.topology import (
    DEAD_LETTER_QUEUE,
    DELIVERY_LIMIT,
    DISPATCH_QUEUE,
    LEDGER_ACCEPTED_QUEUE,
    LEDGER_DEAD_LETTER_QUEUE,
    LEDGER_OUTCOMES_QUEUE,
    LEDGER_RECEIPTS_QUEUE,
    RECEIPTS_PENDING_QUEUE,
    RECEIPTS_UNMATCHED_QUEUE,
    WEBHOOK_DEAD_LETTER_QUEUE,
    WEBHOOK_INBOUND_QUEUE,
    WEBHOOK_OUTCOMES_QUEUE,
    WEBHOOK_RECEIPTS_QUEUE,
    WEBHOOK_RETRIES_QUEUE,
    declare_webhook_queues,
    retry_queue,
    topology_queues,
    webhook_queues,
    work_queue,
    work_queue_arguments,
)

WORK_QUEUES = [
    DISPATCH_QUEUE,
    LEDGER_ACCEPTED_QUEUE,
    LEDGER_OUTCOMES_QUEUE,
    LEDGER_RECEIPTS_QUEUE,
    RECEIPTS_PENDING_QUEUE,
    WEBHOOK_OUTCOMES_QUEUE,
    WEBHOOK_RECEIPTS_QUEUE,
    WEBHOOK_INBOUND_QUEUE,
    WEBHOOK_RETRIES_QUEUE,
]
WEBHOOK_DELAYS = (1_000, 5_000)


def _args(queue: RabbitQueue) -> dict[str, object]:
    return dict(queue.arguments or {})


def test_work_queue_arguments_name_their_limit_and_dead_letter_target() -> None:
    assert work_queue_arguments("q.dead") == {
        "x-delivery-limit": DELIVERY_LIMIT,
        "x-dead-letter-exchange": "",
        "x-dead-letter-routing-key": "q.dead",
        "x-dead-letter-strategy": "at-least-once",
        "x-overflow": "reject-publish",
    }
    # Above RabbitMQ 4's default of 20, which a Redis outage's requeues can reach.
    assert DELIVERY_LIMIT > 20


@given(st.integers(min_value=1, max_value=10_000), st.text(min_size=1, max_size=40))
def test_work_queue_is_quorum_and_keeps_the_limit_it_is_given(limit: int, dead: str) -> None:
    queue = work_queue("q", dead_letters=dead, delivery_limit=limit)
    assert queue.durable
    assert _args(queue) == {"x-queue-type": "quorum", **work_queue_arguments(dead, limit)}


def test_every_consumed_queue_dead_letters_to_a_queue_of_the_topology() -> None:
    queues = {q.name: q for q in topology_queues() + webhook_queues(WEBHOOK_DELAYS)}
    for queue in WORK_QUEUES:
        args = _args(queue)
        assert args["x-delivery-limit"] == DELIVERY_LIMIT, queue.name
        assert args["x-dead-letter-routing-key"] in queues, queue.name
    assert _args(DISPATCH_QUEUE)["x-dead-letter-routing-key"] == DEAD_LETTER_QUEUE.name
    for queue in (LEDGER_ACCEPTED_QUEUE, LEDGER_OUTCOMES_QUEUE, LEDGER_RECEIPTS_QUEUE):
        assert _args(queue)["x-dead-letter-routing-key"] == LEDGER_DEAD_LETTER_QUEUE.name
    assert _args(RECEIPTS_PENDING_QUEUE)["x-dead-letter-routing-key"] == RECEIPTS_UNMATCHED_QUEUE.name
    for queue in (WEBHOOK_OUTCOMES_QUEUE, WEBHOOK_RECEIPTS_QUEUE, WEBHOOK_INBOUND_QUEUE, WEBHOOK_RETRIES_QUEUE):
        assert _args(queue)["x-dead-letter-routing-key"] == WEBHOOK_DEAD_LETTER_QUEUE.name


def test_every_queue_is_quorum() -> None:
    # A classic queue lives on the node that declared it: while that node is down, every
    # service declaring it fails (`NOT_FOUND - home node ... of durable queue`).
    for queue in topology_queues() + webhook_queues(WEBHOOK_DELAYS):
        assert _args(queue)["x-queue-type"] == "quorum", queue.name
        assert queue.durable, queue.name


def test_dead_letter_queues_have_no_dead_letter_target_of_their_own() -> None:
    # Nothing consumes them; an operator's reads never requeue (cli/queue_moves.py).
    for queue in (DEAD_LETTER_QUEUE, LEDGER_DEAD_LETTER_QUEUE, RECEIPTS_UNMATCHED_QUEUE, WEBHOOK_DEAD_LETTER_QUEUE):
        assert _args(queue) == {"x-queue-type": "quorum"}


@given(st.integers(min_value=1, max_value=3_600_000))
def test_retry_queues_wait_then_dead_letter_back_at_least_once(delay_ms: int) -> None:
    args = _args(retry_queue(delay_ms))
    assert args == {
        "x-queue-type": "quorum",
        "x-message-ttl": delay_ms,
        "x-dead-letter-exchange": "",
        "x-dead-letter-routing-key": DISPATCH_QUEUE.name,
        "x-dead-letter-strategy": "at-least-once",
        "x-overflow": "reject-publish",
    }


async def test_webhook_queues_lists_every_queue_the_sender_declares(amqp_url: str, rabbit_admin: Any) -> None:
    """`rsms migrate-topology` checks `webhook_queues`: a queue the sender declares but the
    list forgets would never be migrated."""
    import asyncio
    import subprocess
    from urllib.parse import urlsplit

    from faststream.rabbit import RabbitBroker

    broker = RabbitBroker(amqp_url, logger=None)
    await broker.connect()
    try:
        await declare_webhook_queues(broker, WEBHOOK_DELAYS)
    finally:
        await broker.stop()
    vhost = urlsplit(amqp_url).path.lstrip("/")
    listed = (
        await asyncio.to_thread(
            subprocess.run,
            [*rabbit_admin.exec_prefix, "rabbitmqctl", "-q", "list_queues", "-p", vhost, "name", "--no-table-headers"],
            check=True,
            capture_output=True,
            text=True,
        )
    ).stdout.split()
    assert sorted(listed) == sorted(q.name for q in webhook_queues(WEBHOOK_DELAYS))
