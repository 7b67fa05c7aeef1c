"""`rsms migrate-topology` on a vhost an older version declared: classic dead-letter, retry
and query queues, quorum work queues without a delivery limit, all holding messages."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import aio_pika
from click.testing import CliRunner, Result

from cli.migrate_topology import MIGRATING_SUFFIX, migrate_topology, plan
from shared.topology import (
    ACCEPTED_EXCHANGE,
    DEAD_LETTER_QUEUE,
    DISPATCH_QUEUE,
    LEDGER_ACCEPTED_QUEUE,
    LEDGER_OUTCOMES_QUEUE,
    LEDGER_QUERIES_QUEUE,
    OUTCOMES_EXCHANGE,
    RECEIPTS_EXCHANGE,
    WEBHOOK_DEAD_LETTER_QUEUE,
    WEBHOOK_OUTCOMES_QUEUE,
    WEBHOOK_RECEIPTS_QUEUE,
    WEBHOOK_RETRIES_QUEUE,
    retry_queue,
    topology_queues,
    webhook_queues,
)
from tests.dispatcher.harness import make_job, numbers
from tests.support.queues import depth, drain
from tests.webhooks.support import write_accounts

OLD_RETRY = "rsms.dispatch.retry.600000ms"


async def _declare_old_topology(amqp_url: str) -> None:
    """What the version before quorum everywhere declared, with messages in it, and the
    leftovers of an interrupted migration of `rsms.ledger.outcomes`."""
    connection = await aio_pika.connect(amqp_url)
    try:
        channel = await connection.channel(publisher_confirms=True)
        accepted = await channel.declare_exchange(ACCEPTED_EXCHANGE.name, aio_pika.ExchangeType.FANOUT, durable=True)
        for name in (DISPATCH_QUEUE.name, LEDGER_ACCEPTED_QUEUE.name):
            queue = await channel.declare_queue(name, durable=True, arguments={"x-queue-type": "quorum"})
            await queue.bind(accepted)
        await channel.declare_queue(LEDGER_OUTCOMES_QUEUE.name, durable=True, arguments={"x-queue-type": "quorum"})
        await channel.declare_queue(DEAD_LETTER_QUEUE.name, durable=True)  # classic
        await channel.declare_queue(
            OLD_RETRY,
            durable=True,
            arguments={
                "x-message-ttl": 600_000,
                "x-dead-letter-exchange": "",
                "x-dead-letter-routing-key": DISPATCH_QUEUE.name,
            },
        )
        parked = LEDGER_OUTCOMES_QUEUE.name + MIGRATING_SUFFIX
        await channel.declare_queue(parked, durable=True, arguments={"x-queue-type": "quorum"})

        def message(body: bytes) -> aio_pika.Message:
            return aio_pika.Message(body, delivery_mode=aio_pika.DeliveryMode.PERSISTENT, headers={"k": "v"})

        for i in range(5):
            await accepted.publish(message(make_job(numbers(1, start=i)).model_dump_json().encode()), routing_key="")
        for name, count in (
            (DEAD_LETTER_QUEUE.name, 2),
            (OLD_RETRY, 3),
            (LEDGER_OUTCOMES_QUEUE.name + MIGRATING_SUFFIX, 1),
        ):
            for i in range(count):
                await channel.default_exchange.publish(message(f'{{"n": {i}}}'.encode()), routing_key=name)
    finally:
        await connection.close()


async def _migrate(amqp_url: str, *args: str, accounts_file: Path | None = None) -> Result:
    env = {"RSMS_AMQP_URL": amqp_url}
    if accounts_file is not None:  # else no webhook queue exists, and no accounts file is read
        env["RSMS_ACCOUNTS_FILE"] = str(accounts_file)
    return await asyncio.to_thread(CliRunner().invoke, migrate_topology, ["--yes", "--json", *args], env=env)


async def test_migration_moves_every_message_and_leaves_the_new_arguments_and_a_second_run_does_nothing(
    amqp_url,
) -> None:
    await _declare_old_topology(amqp_url)

    result = await _migrate(amqp_url)
    assert result.exit_code == 0, result.output
    rows = {r["queue"]: (r["moved"], r["status"]) for r in json.loads(result.output)}
    assert rows[DISPATCH_QUEUE.name] == (5, "migrated")
    assert rows[LEDGER_ACCEPTED_QUEUE.name] == (5, "migrated")
    assert rows[DEAD_LETTER_QUEUE.name] == (2, "migrated")
    assert rows[OLD_RETRY] == (3, "migrated")
    assert rows[LEDGER_OUTCOMES_QUEUE.name] == (1, "migrated")  # the interrupted run's message, back
    assert rows[retry_queue(1_000).name] == (0, "declared")

    expected_depths = {DISPATCH_QUEUE.name: 5, LEDGER_ACCEPTED_QUEUE.name: 5, DEAD_LETTER_QUEUE.name: 2, OLD_RETRY: 3}
    for name, count in expected_depths.items():
        assert await depth(amqp_url, name) == count, name
    states = await plan(amqp_url, topology_queues())
    assert all(s.exists and s.current and s.parked is None for s in states), states
    moved = await drain(amqp_url, DEAD_LETTER_QUEUE.name, expect=2)
    assert [m["body"] for m in moved] == [{"n": 0}, {"n": 1}]  # in order, bodies as they were

    # The bindings came back with the queues: a job accepted now reaches both consumers.
    connection = await aio_pika.connect(amqp_url)
    try:
        channel = await connection.channel(publisher_confirms=True)
        exchange = await channel.get_exchange(ACCEPTED_EXCHANGE.name)
        await exchange.publish(aio_pika.Message(make_job(numbers(1, start=99)).model_dump_json().encode()), "")
    finally:
        await connection.close()
    assert await depth(amqp_url, DISPATCH_QUEUE.name) == 6
    assert await depth(amqp_url, LEDGER_ACCEPTED_QUEUE.name) == 6

    again = await _migrate(amqp_url)
    assert again.exit_code == 0, again.output
    assert {(r["moved"], r["status"]) for r in json.loads(again.output)} == {(0, "up to date")}


async def test_migration_refuses_while_a_service_consumes_and_moves_nothing(amqp_url) -> None:
    await _declare_old_topology(amqp_url)
    connection = await aio_pika.connect(amqp_url)
    try:
        channel = await connection.channel()
        queue = await channel.get_queue(DISPATCH_QUEUE.name)
        await channel.set_qos(prefetch_count=1)
        got: asyncio.Queue[aio_pika.abc.AbstractIncomingMessage] = asyncio.Queue()
        await queue.consume(got.put)
        await got.get()  # a dispatcher holding one job
        result = await _migrate(amqp_url)
        assert result.exit_code == 1
        assert "stop the services first" in result.output and DISPATCH_QUEUE.name in result.output
    finally:
        await connection.close()
    assert await depth(amqp_url, DISPATCH_QUEUE.name) == 5
    assert await depth(amqp_url, DEAD_LETTER_QUEUE.name) == 2


async def test_a_service_waits_on_the_old_topology_and_starts_once_it_is_migrated(amqp_url) -> None:
    from faststream.rabbit import RabbitBroker

    from shared.broker_connection import connect_when_available
    from shared.topology import declare_topology

    await _declare_old_topology(amqp_url)
    broker = RabbitBroker(amqp_url)
    starting = asyncio.create_task(connect_when_available(broker, lambda: declare_topology(broker), max_delay=0.2))
    try:
        await asyncio.sleep(1.0)
        assert not starting.done(), "refused (406) by the old queues: it waits, it does not crash"
        assert (await _migrate(amqp_url)).exit_code == 0
        await asyncio.wait_for(starting, timeout=10)
    finally:
        starting.cancel()
        await broker.stop()
    assert await depth(amqp_url, DISPATCH_QUEUE.name) == 5


async def _declare_old_webhook_and_query_queues(amqp_url: str) -> None:
    """What the version before this one declared: a classic webhook dead-letter queue and a
    classic query queue, the sender's work queues quorum but without a delivery limit, each
    holding messages."""
    connection = await aio_pika.connect(amqp_url)
    try:
        channel = await connection.channel(publisher_confirms=True)
        for name in (WEBHOOK_DEAD_LETTER_QUEUE.name, LEDGER_QUERIES_QUEUE.name):
            await channel.declare_queue(name, durable=True)  # classic
        for queue, exchange in (
            (WEBHOOK_OUTCOMES_QUEUE, OUTCOMES_EXCHANGE),
            (WEBHOOK_RECEIPTS_QUEUE, RECEIPTS_EXCHANGE),
        ):
            declared = await channel.declare_queue(queue.name, durable=True, arguments={"x-queue-type": "quorum"})
            source = await channel.declare_exchange(exchange.name, aio_pika.ExchangeType.FANOUT, durable=True)
            await declared.bind(source)
        for name, count in (
            (WEBHOOK_DEAD_LETTER_QUEUE.name, 3),
            (LEDGER_QUERIES_QUEUE.name, 2),
            (WEBHOOK_OUTCOMES_QUEUE.name, 4),
        ):
            for i in range(count):
                message = aio_pika.Message(f'{{"n": {i}}}'.encode(), delivery_mode=aio_pika.DeliveryMode.PERSISTENT)
                await channel.default_exchange.publish(message, routing_key=name)
    finally:
        await connection.close()


async def test_the_classic_webhook_dead_letters_and_query_queue_move_to_quorum_without_losing_any(
    amqp_url, accounts_file: Path
) -> None:
    await _declare_old_webhook_and_query_queues(amqp_url)
    write_accounts(accounts_file, {"acme": ("https://acme.example/rsms-events", "whsec_" + "s" * 32)})

    result = await _migrate(amqp_url, accounts_file=accounts_file)
    assert result.exit_code == 0, result.output
    rows = {r["queue"]: (r["moved"], r["status"]) for r in json.loads(result.output)}
    assert rows[WEBHOOK_DEAD_LETTER_QUEUE.name] == (3, "migrated")
    assert rows[LEDGER_QUERIES_QUEUE.name] == (2, "migrated")
    assert rows[WEBHOOK_OUTCOMES_QUEUE.name] == (4, "migrated")
    assert rows[WEBHOOK_RECEIPTS_QUEUE.name] == (0, "migrated")
    assert rows[WEBHOOK_RETRIES_QUEUE.name] == (0, "declared")  # the sender's, as it declares it

    dead = await drain(amqp_url, WEBHOOK_DEAD_LETTER_QUEUE.name, expect=3)
    assert [m["body"] for m in dead] == [{"n": 0}, {"n": 1}, {"n": 2}]  # in order, as they were
    assert await depth(amqp_url, WEBHOOK_OUTCOMES_QUEUE.name) == 4
    # Old queries are stale: they are kept through the move, then expire on the new queue.
    assert await depth(amqp_url, LEDGER_QUERIES_QUEUE.name) == 2
    states = await plan(amqp_url, [*topology_queues(), *webhook_queues(())])
    assert all(s.exists and s.current and s.parked is None for s in states), states

    # A project has a webhook: the sender's bindings came back (as it would assert them), so
    # an outcome published before the sender starts again reaches its queue too.
    await _publish_outcome(amqp_url)
    assert await depth(amqp_url, WEBHOOK_OUTCOMES_QUEUE.name) == 5
    assert await depth(amqp_url, LEDGER_OUTCOMES_QUEUE.name) == 1

    again = await _migrate(amqp_url, accounts_file=accounts_file)
    assert again.exit_code == 0, again.output
    assert {(r["moved"], r["status"]) for r in json.loads(again.output)} == {(0, "up to date")}


async def test_without_webhooks_the_migrated_event_queues_are_left_unbound(amqp_url, accounts_file: Path) -> None:
    """As the sender would leave them: no project has a webhook, so no copies (the older
    version's bindings, lost with the re-declared queues, are not made again)."""
    await _declare_old_webhook_and_query_queues(amqp_url)
    write_accounts(accounts_file, {"acme": None})
    result = await _migrate(amqp_url, accounts_file=accounts_file)
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)  # --json: the table only
    await _publish_outcome(amqp_url)
    assert await depth(amqp_url, WEBHOOK_OUTCOMES_QUEUE.name) == 4  # the migrated ones, no copy
    assert await depth(amqp_url, LEDGER_OUTCOMES_QUEUE.name) == 1

    table = await asyncio.to_thread(
        CliRunner().invoke,
        migrate_topology,
        ["--yes"],
        env={"RSMS_AMQP_URL": amqp_url, "RSMS_ACCOUNTS_FILE": str(accounts_file)},
    )
    assert table.exit_code == 0 and "Webhook event queues not bound: no project has a webhook" in table.output


async def test_an_accounts_file_that_does_not_parse_stops_it_before_anything_moves(
    amqp_url, accounts_file: Path
) -> None:
    """Bound or not is read from the accounts file; a guess could drop events or keep a cost."""
    await _declare_old_webhook_and_query_queues(amqp_url)
    await asyncio.to_thread(accounts_file.write_text, "projects = [not toml")
    result = await _migrate(amqp_url, accounts_file=accounts_file)
    assert result.exit_code == 1 and "fix the accounts file first" in result.output
    assert await depth(amqp_url, WEBHOOK_OUTCOMES_QUEUE.name) == 4  # where it was, not migrated
    assert not (await plan(amqp_url, [WEBHOOK_OUTCOMES_QUEUE]))[0].current


async def _publish_outcome(amqp_url: str) -> None:
    connection = await aio_pika.connect(amqp_url)
    try:
        channel = await connection.channel(publisher_confirms=True)
        exchange = await channel.get_exchange(OUTCOMES_EXCHANGE.name)
        await exchange.publish(aio_pika.Message(b'{"n": 99}'), "")
    finally:
        await connection.close()


async def test_a_gateway_that_never_ran_the_webhook_sender_gets_none_of_its_queues(amqp_url) -> None:
    await _declare_old_topology(amqp_url)
    result = await _migrate(amqp_url)
    assert result.exit_code == 0, result.output
    assert not any(r["queue"].startswith("rsms.webhooks.") for r in json.loads(result.output))
    states = await plan(amqp_url, webhook_queues(()))
    assert not any(s.exists for s in states)
