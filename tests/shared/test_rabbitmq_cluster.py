"""shared/rabbitmq.py's cluster part: URL lists, node rotation, consumer and publish health.

The decisions are plain functions (tested here without a broker); the tests marked
"upgrade guard" check, against the test RabbitMQ, the FastStream / aio-pika behaviour the
adapter relies on, so an upgrade that changes it fails here, loudly, not in production.
"""

from __future__ import annotations

import asyncio
import random
import socket
from urllib.parse import urlsplit

import aio_pika
import pytest
from faststream.rabbit import RabbitQueue
from hypothesis import given
from hypothesis import strategies as st

from shared.rabbitmq import (
    ClusterConnection,
    PublishHealth,
    broker_ready,
    cluster_broker,
    connect_to_any,
    connected_node,
    consumer_attached,
    first_node,
    missing_consumers,
    next_node,
    parse_amqp_urls,
    publishes_refused,
    refused_too_long,
    subscriber_attached,
)

# --- URL lists --------------------------------------------------------------------------


def test_one_url_is_a_list_of_one() -> None:
    assert parse_amqp_urls("amqp://guest:guest@localhost:5672/") == ["amqp://guest:guest@localhost:5672/"]


def test_several_urls_are_split_on_commas_with_spaces_and_empty_parts_ignored() -> None:
    value = " amqp://u:p@a:5672/v , amqps://u:p@b:5671/v,,amqp://u:p@c/v "
    assert parse_amqp_urls(value) == ["amqp://u:p@a:5672/v", "amqps://u:p@b:5671/v", "amqp://u:p@c/v"]


@pytest.mark.parametrize("value", ["", " , ", "http://a:5672/", "amqp:///vhost", "amqp://u:p@a:port/"])
def test_anything_else_is_refused_without_showing_the_password(value: str) -> None:
    with pytest.raises(ValueError) as raised:
        parse_amqp_urls(value.replace("u:p@", "u:secret@"))
    assert "secret" not in str(raised.value)


hosts = st.lists(st.from_regex(r"[a-z][a-z0-9-]{0,10}", fullmatch=True), min_size=1, max_size=6)


@given(hosts, st.lists(st.integers(1, 65535), min_size=6, max_size=6))
def test_every_listed_node_comes_back_in_order(names: list[str], ports: list[int]) -> None:
    urls = [f"amqp://guest:guest@{name}:{port}/vh" for name, port in zip(names, ports, strict=False)]
    assert parse_amqp_urls(",".join(urls)) == urls


@given(st.integers(1, 20), st.integers(0, 1000))
def test_rotation_visits_every_node_once_per_round(count: int, seed: int) -> None:
    start = first_node(count, random.Random(seed))
    assert 0 <= start < count
    seen = []
    node = start
    for _ in range(count):
        seen.append(node)
        node = next_node(node, count)
    assert sorted(seen) == list(range(count))
    assert node == start


# --- publish health ---------------------------------------------------------------------


def test_publishes_are_refused_from_a_failure_until_a_success_or_the_window_ends() -> None:
    assert not publishes_refused(None, None, now=100.0, window=10.0)
    assert not publishes_refused(None, 99.0, now=100.0, window=10.0)
    assert publishes_refused(99.0, None, now=100.0, window=10.0)
    assert publishes_refused(99.0, 98.0, now=100.0, window=10.0)
    assert not publishes_refused(99.0, 99.5, now=100.0, window=10.0)
    assert not publishes_refused(80.0, None, now=100.0, window=10.0)


async def test_a_nack_a_timeout_and_an_error_count_as_refused_an_ack_does_not() -> None:
    from pamqp.commands import Basic

    now = [0.0]
    health = PublishHealth(window=10.0, clock=lambda: now[0])

    async def answer(value: object) -> object:
        return value

    await health.watch(answer(Basic.Ack()))
    assert not health.refusing()
    now[0] = 0.5
    await health.watch(answer(Basic.Nack()))
    assert health.refusing()
    now[0] = 1.0
    await health.watch(answer(Basic.Ack()))
    assert not health.refusing()
    now[0] = 2.0
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.01):
            await health.watch(asyncio.sleep(10))
    assert health.refusing()
    now[0] = 3.0
    with pytest.raises(ConnectionError):
        await health.watch(_raises(ConnectionError("channel closed")))
    assert health.refusing()
    now[0] = 20.0
    assert not health.refusing()


async def _raises(error: BaseException) -> None:
    raise error


# --- upgrade guards: what the adapter relies on, checked against RabbitMQ ---------------


def _dead_url(live_url: str) -> str:
    """The same vhost on a port nobody listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    parts = urlsplit(live_url)
    return parts._replace(netloc=f"{parts.username}:{parts.password}@127.0.0.1:{port}").geturl()


async def test_upgrade_guard_each_connection_attempt_goes_to_the_next_node(amqp_url: str) -> None:
    """aio-pika drops the transport right before every attempt (the rotation's hook), and
    reconnects through `Connection.connect` using `self.url`."""
    dead = _dead_url(amqp_url)
    # Not failing fast: the first attempt (dead node) fails, the connection moves on.
    connection = ClusterConnection(
        aio_pika.connection.make_url(dead), nodes=[dead, amqp_url], start=0, fail_fast="0", reconnect_interval="0.1"
    )
    try:
        async with asyncio.timeout(20):
            await connection.connect()
        assert connection.node_url.endswith(urlsplit(amqp_url).path)
        assert urlsplit(connection.node_url).port == urlsplit(amqp_url).port
        # The node "dies": the transport goes; the next attempt (dead node) fails, the one
        # after it reaches the live node again.
        assert connection.transport is not None
        lost = connection.transport
        await lost.connection.close(ConnectionError("node lost"))
        for _ in range(400):  # up to 20 s
            if connection.connected.is_set() and connection.transport is not lost:
                break
            await asyncio.sleep(0.05)
        assert connection.connected.is_set() and connection.transport is not lost
        assert urlsplit(connection.node_url).port == urlsplit(amqp_url).port
    finally:
        await connection.close()


async def test_upgrade_guard_the_broker_connects_through_the_cluster_connection(amqp_url: str) -> None:
    """FastStream hands `_connection_kwargs` to `aio_pika.connect_robust`, which builds the
    connection with `connection_class`; consumer tags and channels are where we read them."""
    dead = _dead_url(amqp_url)
    broker = cluster_broker(f"{dead},{amqp_url}", logger=None, fail_fast=False)
    queue = RabbitQueue("rsms.test.cluster-guard", auto_delete=True)
    subscriber = broker.subscriber(queue)
    got: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()

    @subscriber
    async def handle(body: bytes) -> None:
        if not got.done():
            got.set_result(body)

    async with asyncio.timeout(30):
        await broker.start()
    try:
        assert isinstance(broker._connection, ClusterConnection)
        assert connected_node(broker) is not None
        assert subscriber_attached(subscriber)
        assert missing_consumers(broker) == []
        await broker.publish(b"hello", queue=queue.name)
        assert await asyncio.wait_for(got, 10) == b"hello"
        # A consumer the broker no longer has (cancelled here, as a queue leader loss or a
        # deleted queue would) is reported missing.
        assert subscriber._queue_obj is not None and subscriber._consumer_tag is not None
        tag = subscriber._consumer_tag
        await subscriber._queue_obj.cancel(tag)
        assert not consumer_attached(subscriber._queue_obj, tag)
        assert missing_consumers(broker) == [queue.name]
        assert missing_consumers(broker, paused=[subscriber]) == []
    finally:
        await broker.stop()


async def test_upgrade_guard_publish_middleware_sees_every_broker_publish(amqp_url: str) -> None:
    health = PublishHealth()
    broker = cluster_broker(amqp_url, logger=None, middlewares=[health.middleware()])
    async with broker:
        await broker.connect()
        await broker.publish(b"x", queue="rsms.test.nowhere")
    assert health.last_success is not None and health.last_failure is None


async def test_the_cli_connects_to_the_first_node_that_answers(amqp_url: str) -> None:
    connection = await connect_to_any(f"{_dead_url(amqp_url)},{amqp_url}")
    try:
        assert not connection.is_closed
    finally:
        await connection.close()
    with pytest.raises(ConnectionError, match="no RabbitMQ node answers"):
        await connect_to_any(_dead_url(amqp_url), connect_seconds=2)


async def test_readiness_is_false_while_a_consumer_is_missing_or_publishes_are_refused(amqp_url: str) -> None:
    health = PublishHealth()
    broker = cluster_broker(amqp_url, logger=None, middlewares=[health.middleware()])
    queue = RabbitQueue("rsms.test.readiness")  # not auto-deleted: its consumer is cancelled
    subscriber = broker.subscriber(queue)

    @subscriber
    async def handle(body: bytes) -> None:
        return None

    async with asyncio.timeout(30):
        await broker.start()
    try:
        assert await broker_ready(broker, health)
        # A consumer gone (the broker cancelled it): not ready; back: ready again.
        assert subscriber._queue_obj is not None and subscriber._consumer_tag is not None
        await subscriber._queue_obj.cancel(subscriber._consumer_tag)
        assert not await broker_ready(broker, health)
        subscriber._consumer_tag = await subscriber._queue_obj.consume(subscriber.consume, no_ack=False)  # type: ignore[arg-type]
        assert await broker_ready(broker, health)
        # A publish the broker refuses (no such exchange): not ready until one goes through.
        with pytest.raises(Exception):  # noqa: B017 - whichever error the client raises for it
            await broker.publish(b"x", exchange="rsms.test.no-such-exchange")
        assert not await broker_ready(broker, health)
        for _ in range(100):  # the robust channel re-opens after the refusal
            try:
                await broker.publish(b"x", queue=queue.name)
                break
            except Exception:
                await asyncio.sleep(0.1)
        assert await broker_ready(broker, health)
    finally:
        await broker.stop()


async def test_a_broker_starts_on_a_node_that_answers_even_failing_fast(amqp_url: str) -> None:
    """As the CLI connects: one attempt, no retry loop; a dead node in the list is skipped."""
    dead = _dead_url(amqp_url)
    for _ in range(5):  # the start node is random
        broker = cluster_broker(f"{dead},{dead},{amqp_url}", logger=None)
        async with broker:
            await broker.connect()
            assert connected_node(broker) is not None


def test_refusals_are_stuck_after_the_limit_without_a_success() -> None:
    assert not refused_too_long(None, now=100.0, limit=5.0)
    assert not refused_too_long(97.0, now=100.0, limit=5.0)
    assert refused_too_long(95.0, now=100.0, limit=5.0)


def test_stuck_publishes_call_on_stuck_once_a_period_and_a_success_resets() -> None:
    now = [0.0]
    health = PublishHealth(clock=lambda: now[0], stuck_after=5.0)
    calls: list[float] = []
    health.on_stuck = lambda: calls.append(now[0])
    for t in (0.0, 2.0, 4.9, 5.0, 6.0, 9.9, 10.0):
        now[0] = t
        health.failed()
    assert calls == [5.0, 10.0]
    now[0] = 11.0
    health.succeeded()
    now[0] = 12.0
    health.failed()
    now[0] = 16.0
    health.failed()
    assert calls == [5.0, 10.0]
