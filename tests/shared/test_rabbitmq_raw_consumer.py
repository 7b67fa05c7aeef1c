"""What `shared.rabbitmq.consume_raw` assumes of FastStream 0.7 / aio-pika / aiormq, checked
on the real broker: after an upgrade, a failure here names the assumption that broke."""

from __future__ import annotations

import asyncio

from faststream.rabbit import Channel, RabbitBroker, RabbitQueue

from shared.rabbitmq import ChannelInvalidStateError, RawDelivery, ack_on_channel, consume_raw, hand_back
from tests.ledger.support import eventually
from tests.support.queues import depth


async def test_consumers_on_one_channel_object_share_one_run_of_tags_and_one_multiple_ack_settles_them(amqp_url):
    broker = RabbitBroker(amqp_url, logger=None)
    await broker.connect()
    try:
        queues = [RabbitQueue(f"raw-consumer-{name}", durable=True) for name in ("a", "b")]
        for queue in queues:
            await broker.declare_queue(queue)
        got: list[RawDelivery] = []

        async def collect(message: RawDelivery) -> None:
            got.append(message)

        # Assumption: FastStream's broker.config.channel_manager hands out one robust channel
        # per Channel object, and aio-pika consumes a passively declared queue on it.
        channel = Channel(prefetch_count=10)
        consumers = [await consume_raw(broker, queue.name, channel, collect) for queue in queues]
        for i in range(6):
            await broker.publish(b"x", queue=queues[i % 2].name, persist=True)
        await eventually(lambda: len(got) == 6, interval=0.02, what="six deliveries")

        # Assumption: the raw delivery is aio-pika's, with its body, tag and aiormq channel.
        assert all(message.body == b"x" for message in got)
        assert len({id(message.channel) for message in got}) == 1, "both queues on one channel"
        assert sorted(int(message.delivery_tag or 0) for message in got) == [1, 2, 3, 4, 5, 6]

        # One frame settles both queues' deliveries.
        await ack_on_channel(got[0].channel, 6, multiple=True)
        for consumer in consumers:
            await consumer.cancel()
    finally:
        await broker.stop()
    # Stopped: whatever was not acked would be back in its queue.
    assert [await depth(amqp_url, queue.name) for queue in queues] == [0, 0]


async def test_prefetch_bounds_the_unsettled_deliveries_of_each_consumer(amqp_url):
    broker = RabbitBroker(amqp_url, logger=None)
    await broker.connect()
    try:
        queue = RabbitQueue("raw-consumer-prefetch", durable=True)
        await broker.declare_queue(queue)
        got: list[RawDelivery] = []

        async def collect(message: RawDelivery) -> None:
            got.append(message)

        for _ in range(8):
            await broker.publish(b"x", queue=queue.name, persist=True)
        consumer = await consume_raw(broker, queue.name, Channel(prefetch_count=3), collect)
        await eventually(lambda: len(got) == 3, interval=0.02, what="the prefetch window")
        await asyncio.sleep(0.3)
        assert len(got) == 3, "no more than the prefetch while none is settled"
        await ack_on_channel(got[-1].channel, 3, multiple=True)
        await eventually(lambda: len(got) == 6, interval=0.02, what="the next window after a multiple-ack")
        await consumer.cancel()
    finally:
        await broker.stop()
    assert await depth(amqp_url, queue.name) == 5


async def test_a_paused_raw_consumer_gets_nothing_until_resumed_with_the_same_callback(amqp_url):
    broker = RabbitBroker(amqp_url, logger=None)
    await broker.connect()
    try:
        queue = RabbitQueue("raw-consumer-pause", durable=True)
        await broker.declare_queue(queue)
        got: list[bytes] = []

        async def take(message: RawDelivery) -> None:
            got.append(message.body)
            await message.ack()

        consumer = await consume_raw(broker, queue.name, Channel(prefetch_count=10), take)
        assert consumer.attached()
        assert await consumer.pause() is True
        assert await consumer.pause() is False, "paused already"
        assert not consumer.attached(), "readiness sees a paused consumer as detached"
        for body in (b"a", b"b", b"c"):
            await broker.publish(body, queue=queue.name, persist=True)
        await asyncio.sleep(0.3)
        assert got == [] and await depth(amqp_url, queue.name) == 3, "ready in the queue: delivered to no one"

        # Assumption: aio-pika's robust queue consumes again with the callback it is given.
        assert await consumer.resume() is True
        assert await consumer.resume() is False, "consuming already"
        assert consumer.attached()
        await eventually(lambda: got == [b"a", b"b", b"c"], interval=0.02, what="the three after resume, in order")
        await consumer.cancel()
    finally:
        await broker.stop()


async def test_a_raw_delivery_carries_the_redelivered_flag_and_the_x_death_headers(amqp_url):
    """What the dispatcher reads off a job's delivery (`job_handler`, `job_reader.delivered_before`)."""
    broker = RabbitBroker(amqp_url, logger=None)
    await broker.connect()
    try:
        queue = RabbitQueue("raw-consumer-redelivered", durable=True)
        await broker.declare_queue(queue)
        seen: list[tuple[bool, object]] = []

        async def take(message: RawDelivery) -> None:
            seen.append((message.redelivered, message.headers))
            if len(seen) == 1:
                await hand_back(message)  # back to the queue: delivered again, flagged
            else:
                await message.ack()

        deaths = [{"reason": "delivery_limit", "queue": queue.name, "count": 1}]
        await broker.publish(b"job", queue=queue.name, persist=True, headers={"x-death": deaths})
        consumer = await consume_raw(broker, queue.name, Channel(prefetch_count=10), take)
        await eventually(lambda: len(seen) == 2, interval=0.02, what="the job delivered twice")
        assert [redelivered for redelivered, _ in seen] == [False, True]
        headers = seen[1][1]
        assert isinstance(headers, dict) and headers.get("x-death") == deaths, headers
        await consumer.cancel()
    finally:
        await broker.stop()


async def test_after_a_connection_loss_the_consumer_is_back_and_a_paused_one_stays_paused(amqp_url):
    """aio-pika's robust queue re-consumes what was consuming (same callback) after it
    reconnects, and forgets a consumer paused (cancelled) before the loss."""
    broker = RabbitBroker(amqp_url, logger=None, reconnect_interval=0.2)
    await broker.connect()
    try:
        queues = [RabbitQueue(f"raw-consumer-reconnect-{name}", durable=True) for name in ("on", "paused")]
        for queue in queues:
            await broker.declare_queue(queue)
        got: list[bytes] = []

        async def take(message: RawDelivery) -> None:
            got.append(message.body)
            await message.ack()

        channel = Channel(prefetch_count=10)
        consuming, paused = [await consume_raw(broker, queue.name, channel, take) for queue in queues]
        assert await paused.pause()
        transport = broker._connection.transport  # the test drops the connection under aio-pika
        await transport.connection.close(ConnectionError("connection lost"))
        await eventually(lambda: consuming.attached(), interval=0.05, timeout=20, what="the consumer attached again")
        assert not paused.attached()

        async def published(body: bytes, queue: str) -> bool:
            # The broker's own publishing channel is restored on its own schedule, after
            # or before the consumer's: a closed channel refuses before sending anything.
            try:
                await broker.publish(body, queue=queue, persist=True)
            except ChannelInvalidStateError:
                return False
            return True

        await eventually(lambda: published(b"on", queues[0].name), interval=0.05, timeout=20, what="a publish")
        await broker.publish(b"paused", queue=queues[1].name, persist=True)
        await eventually(lambda: got == [b"on"], interval=0.02, what="the consuming queue's message")
        await asyncio.sleep(0.3)
        assert got == [b"on"] and await depth(amqp_url, queues[1].name) == 1
        assert await paused.resume()
        await eventually(lambda: got == [b"on", b"paused"], interval=0.02, what="the paused queue's after resume")
        await consuming.cancel()
        await paused.cancel()
    finally:
        await broker.stop()


async def test_a_callback_is_cancelled_with_its_channel_unless_it_outlives_it(amqp_url):
    """aiormq cancels the consumer tasks still running when their channel closes (the
    assumption `outlive_channel` works around); with `outlive_channel` the callback runs to
    its end. The dispatcher relies on the second: a job cancelled between its submit and
    its record was held for an operator after every broker restart."""
    broker = RabbitBroker(amqp_url, logger=None)
    await broker.connect()
    try:
        queue = RabbitQueue("raw-consumer-outlive", durable=True)
        await broker.declare_queue(queue)
        release = asyncio.Event()
        started: list[bool] = []
        finished: list[bool] = []

        def callback(outlives: bool):
            async def slow(message: RawDelivery) -> None:
                if message.redelivered:
                    return  # after the reconnect: not the deliveries under test
                started.append(outlives)
                await release.wait()
                finished.append(outlives)

            return slow

        for outlives in (False, True):
            await consume_raw(
                broker, queue.name, Channel(prefetch_count=1), callback(outlives), outlive_channel=outlives
            )
        await broker.publish(b"x", queue=queue.name, persist=True)
        await broker.publish(b"x", queue=queue.name, persist=True)
        await eventually(lambda: len(started) == 2, interval=0.02, what="both consumers holding one delivery")

        connection = broker._connection
        assert connection is not None and connection.transport is not None
        await connection.transport.connection.close(ConnectionError("broker restarted"))
        await asyncio.sleep(0.2)
        release.set()
        await eventually(lambda: True in finished, interval=0.02, what="the outliving callback's end")
        await asyncio.sleep(0.2)
        assert False not in finished, "aiormq no longer cancels a closed channel's consumer tasks"
    finally:
        await broker.stop()
