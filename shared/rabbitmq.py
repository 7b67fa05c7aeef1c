"""The RabbitMQ adapter: what goes under FastStream's public API, and why.

(h10-ledger's part; h10-adapter's module of the same name holds the rest. Merge: keep
theirs, append the "raw consumer" section below; `ack_on_channel` is the same function
in both.)

What each operation assumes of FastStream 0.7 / aio-pika / aiormq is checked by
`tests/shared/test_rabbitmq_raw_consumer.py`: after an upgrade a failing test there
names what broke.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import aiormq
from aio_pika.abc import AbstractIncomingMessage, AbstractQueue
from aio_pika.exceptions import AMQPError, ChannelInvalidStateError
from faststream.rabbit import Channel, RabbitBroker

__all__ = [
    "AMQPError",
    "ChannelInvalidStateError",
    "DeliveryChannel",
    "RawConsumer",
    "RawDelivery",
    "ack_on_channel",
    "consume_raw",
    "hand_back",
]

# aio-pika re-exports aiormq's exceptions: one import for every caller.
#   AMQPError                  the broker or the connection failed under a call
#   ChannelInvalidStateError   the channel is closed (a RuntimeError: e.g. mid-reconnect)

DeliveryChannel = aiormq.abc.AbstractChannel
"""The AMQP channel a message was delivered on: its delivery tags count 1, 2, 3..."""


async def ack_on_channel(channel: DeliveryChannel, tag: int, *, multiple: bool) -> None:
    """One `basic.ack` frame; returns once it is written to the socket. Raises
    ChannelInvalidStateError on a closed channel (the broker requeues what it did not
    get acked)."""
    await channel.basic_ack(tag, multiple=multiple)


# --- the raw consumer ---------------------------------------------------------------
# A subscriber's handler runs once per delivery through FastStream's whole per-message
# path (parser, decoder, middlewares, context scopes, logging, the ack policy, and with
# FastDepends a worker-thread hop to resolve `message: RabbitMessage`): at a few thousand
# small events a second that was most of the ledger's CPU, ten times its inserts. A
# consumer that only collects deliveries for a batch needs none of it. So this consumes
# a queue with aio-pika directly, on a channel of FastStream's robust connection (which
# aio-pika re-opens after a connection loss, re-consuming the queue with the same
# callback), and hands each delivery, unparsed, to a plain coroutine function. The
# caller settles every delivery itself: `ack_on_channel` (one frame for many with
# `multiple`) or `hand_back`.

RawDelivery = AbstractIncomingMessage
"""One delivery as aio-pika gives it: `.body` (bytes), `.delivery_tag` (int, counting
1, 2, 3... on its channel), `.channel` (the `DeliveryChannel` it came on)."""


@dataclass
class RawConsumer:
    queue: AbstractQueue
    consumer_tag: str

    async def cancel(self) -> None:
        """No more deliveries (those unsettled stay with the caller to settle)."""
        if not self.queue.channel.is_closed:
            await self.queue.cancel(self.consumer_tag)


async def consume_raw(
    broker: RabbitBroker, queue_name: str, channel: Channel, on_delivery: Callable[[RawDelivery], Awaitable[None]]
) -> RawConsumer:
    """Starts consuming `queue_name` (declared already) with manual acks; `on_delivery`
    runs for each delivery (a task each, aiormq's and aio-pika's way) and should not wait:
    the caller settles deliveries later.

    Consumers given the same `channel` object share one AMQP channel (FastStream keeps one
    per `Channel` object, not per equal settings), so their deliveries share one run of
    delivery tags; `channel.prefetch_count` bounds each consumer's unsettled deliveries.
    """
    # Not public in FastStream 0.7: its channel cache on the broker's robust connection.
    robust_channel = await broker.config.channel_manager.get_channel(channel)
    # Passive: checks the queue exists without restating its arguments. A robust queue:
    # declared again (passively) and consumed again with the same callback after a
    # reconnect.
    queue = await robust_channel.declare_queue(queue_name, passive=True)
    tag = await queue.consume(on_delivery, no_ack=False)
    return RawConsumer(queue, tag)


async def hand_back(delivery: RawDelivery) -> None:
    """Returns the delivery to its queue (`basic.nack`, requeue) for another try."""
    await delivery.nack(requeue=True)
