"""What `shared.rabbitmq.consume_raw` assumes of FastStream 0.7 / aio-pika / aiormq, checked
on the real broker: after an upgrade, a failure here names the assumption that broke."""

from __future__ import annotations

import asyncio

from faststream.rabbit import Channel, RabbitBroker, RabbitQueue

from shared.rabbitmq import RawDelivery, ack_on_channel, consume_raw
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
