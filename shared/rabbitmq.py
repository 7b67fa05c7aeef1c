"""The RabbitMQ adapter: everything that goes under FastStream's public API, and why.

The services are written in FastStream (subscribers, `broker.publish`, `declare_queue` /
`declare_exchange` and binding what they return, `RabbitMessage.ack/nack/body/headers`).
A few hot or delicate paths need what FastStream does not offer; each is one small,
named operation here, with the reason beside it, and nothing else in `services/` or
`shared/` touches a private attribute of FastStream, `message.raw_message`,
`broker.config`, the broker's context, an aio-pika queue's consumers or an aiormq
channel, or imports `aio_pika` / `aiormq` at all (exceptions included: they are
re-exported here). The operator commands in `cli/` (`rsms dlq`, `rsms webhooks`,
`rsms receipts`, `rsms migrate-topology`) may open a connection of their own with
aio-pika and use its public API (exceptions from `aio_pika.exceptions`): they do not
depend on FastStream's internals.

What each operation assumes of FastStream 0.7 / aio-pika / aiormq is checked by
`tests/shared/test_rabbitmq_adapter.py`, one test per assumption: after an upgrade, a
failing test there names what broke and which section of this file to fix. The
`faststream<0.8` pin in pyproject.toml stays until those tests pass on the new version.

Sections, in order: versions known to work; errors; the message being handled;
acknowledging on the delivery channel; pausing a subscriber; confirmed raw publish; the
direct reply-to consumer; the raw consumer (the ledger's batched intake, checked by
`tests/shared/test_rabbitmq_raw_consumer.py`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import aiormq
from aio_pika.abc import AbstractIncomingMessage, AbstractQueue, AbstractRobustChannel
from aio_pika.exceptions import AMQPError, ChannelInvalidStateError, ChannelPreconditionFailed
from aiormq import spec
from faststream.rabbit import Channel, RabbitBroker
from faststream.rabbit.message import RabbitMessage
from faststream.rabbit.schemas import RABBIT_REPLY
from faststream.rabbit.subscriber import RabbitSubscriber
from pamqp.commands import Basic

__all__ = [
    "DIRECT_REPLY_TO",
    "KNOWN_TO_WORK",
    "AMQPError",
    "ChannelInvalidStateError",
    "ChannelPreconditionFailed",
    "ConfirmedPublisher",
    "DeliveryChannel",
    "RawConsumer",
    "RawDelivery",
    "ack_on_channel",
    "channel_is_closed",
    "consume_direct_replies",
    "consume_raw",
    "current_message",
    "delivery_channel",
    "delivery_tag",
    "hand_back",
    "pause_consumer",
    "publish_confirmed",
    "resume_consumer",
    "was_redelivered",
]

# --- versions known to work ---------------------------------------------------------

KNOWN_TO_WORK: dict[str, tuple[str, str]] = {
    "faststream": ("0.7.8", "0.8"),
    "aio-pika": ("9.4", "11"),
    "aiormq": ("6.8", "8"),
}
"""Distribution: (lowest tested, first untested) release. The adapter's tests fail when
an installed version is outside: run them on the new version, fix what they name, then
widen the range (and the pin in pyproject.toml)."""


# --- errors -------------------------------------------------------------------------
# aio-pika re-exports aiormq's exceptions: one import for every caller.
#
#   AMQPError                  the broker or the connection failed under a call
#   ChannelInvalidStateError   the channel is closed (a RuntimeError: e.g. mid-reconnect)
#   ChannelPreconditionFailed  a queue or exchange exists with other arguments


# --- the message being handled ------------------------------------------------------


def current_message(broker: RabbitBroker) -> RabbitMessage:
    """The message the running handler was called with.

    Handlers of brokers built with `apply_types=False` (no FastDepends: it would resolve
    the message in a worker thread for every job) take only the body; FastStream keeps
    the message in its context under "message" for the duration of the call.
    """
    message: RabbitMessage = broker.context.get_local("message")
    return message


def was_redelivered(message: RabbitMessage) -> bool:
    """The broker's redelivered flag: delivered before to some consumer and not acked.
    FastStream's message does not carry it; aio-pika's does."""
    return bool(message.raw_message.redelivered)


# --- acknowledging on the delivery channel ------------------------------------------
# A multiple-ack (`basic.ack` with `multiple=True`) settles every delivery on a channel
# up to a tag in one frame: FastStream acks one message at a time, through aio-pika's
# message, which also refuses to ack twice. `services/dispatcher/acknowledger.py` decides
# which frames are safe; these are the frames.

DeliveryChannel = aiormq.abc.AbstractChannel
"""The AMQP channel a message was delivered on: its delivery tags count 1, 2, 3..."""


def delivery_tag(message: RabbitMessage) -> int | None:
    tag = message.raw_message.delivery_tag
    return None if tag is None else int(tag)


def delivery_channel(message: RabbitMessage) -> DeliveryChannel:
    return message.raw_message.channel


def channel_is_closed(channel: DeliveryChannel) -> bool:
    return bool(channel.is_closed)


async def ack_on_channel(channel: DeliveryChannel, tag: int, *, multiple: bool) -> None:
    """One `basic.ack` frame; returns once it is written to the socket. Raises
    ChannelInvalidStateError on a closed channel (the broker requeues what it did not
    get acked)."""
    await channel.basic_ack(tag, multiple=multiple)


# --- pausing a subscriber -----------------------------------------------------------
# FastStream 0.7 has no pause: `subscriber.stop()` marks the subscriber stopped first
# and cancels the consumer only after in-flight handlers finish, and messages the broker
# delivers in between are silently left unacknowledged. So these cancel the AMQP
# consumer itself (no more deliveries; in-flight ones are settled by their handlers) and
# consume again on resume, with the subscriber's own callback and arguments. For
# subscribers that settle their messages themselves (not `AckPolicy.ACK_FIRST`).


async def pause_consumer(subscriber: RabbitSubscriber) -> bool:
    """Stops deliveries to a started subscriber; False when there was nothing to stop."""
    queue, tag = subscriber._queue_obj, subscriber._consumer_tag
    if queue is None or tag is None:
        return False
    await queue.cancel(tag)
    subscriber._consumer_tag = None
    return True


async def resume_consumer(subscriber: RabbitSubscriber) -> bool:
    """Deliveries again after `pause_consumer`; False when it was not paused."""
    queue = subscriber._queue_obj
    if queue is None or subscriber._consumer_tag is not None:
        return False
    subscriber._consumer_tag = await queue.consume(
        subscriber.consume,  # type: ignore[arg-type]
        no_ack=False,
        arguments=subscriber.consume_args,
    )
    return True


# --- confirmed raw publish ----------------------------------------------------------

JSON = "application/json"
PERSISTENT = 2


def publish_confirmed(answer: object) -> bool:
    """Whether `broker.publish` on a confirm channel answered the broker's ack."""
    return isinstance(answer, Basic.Ack)


class ConfirmedPublisher:
    """Persistent, mandatory publishes, each returning once the broker confirmed it (a
    nack raises aiormq's DeliveryError), straight on the AMQP channel of a confirm channel
    of their own on the broker's robust connection:

    - FastStream's publish path (middlewares, codec, exchange lookup per call) cost more
      CPU per job attempt than the publish itself;
    - aio-pika's `Exchange.publish` waits for the socket to drain while holding the
      channel's publish lock, so concurrent publishes left one per event-loop turn. Here
      the lock is released once the frame is queued (`wait=False`), concurrent publishes
      leave together, and the broker confirms them together.
    """

    def __init__(self, broker: RabbitBroker, timeout_seconds: float) -> None:
        self._broker = broker
        self._timeout = timeout_seconds
        # The settings FastStream's default channel has (confirms on, returns not raised),
        # on the broker's robust connection, but not the channel messages are delivered on.
        self._spec = Channel(publisher_confirms=True)
        self._channel: AbstractRobustChannel | None = None

    async def open(self) -> None:
        """Opens the channel; call once the broker is connected."""
        self._channel = await self._broker.config.channel_manager.get_channel(self._spec)

    async def publish(
        self,
        body: bytes,
        *,
        exchange: str = "",
        routing_key: str = "",
        message_id: str | None = None,
        content_type: str = JSON,
    ) -> None:
        if self._channel is None:
            raise RuntimeError("ConfirmedPublisher.open() was not called")
        # Asked each time: after a reconnect the robust channel has a new one underneath.
        channel: Any = await self._channel.get_underlay_channel()
        await channel.basic_publish(
            body,
            exchange=exchange,
            routing_key=routing_key,
            properties=spec.Basic.Properties(
                content_type=content_type,
                delivery_mode=PERSISTENT,
                message_id=message_id,
            ),
            mandatory=True,
            timeout=self._timeout,
            wait=False,  # the confirm is awaited; the socket drain need not hold the lock
        )


# --- the direct reply-to consumer ---------------------------------------------------
# Request/reply where many requests wait at once: FastStream's `broker.request` holds a
# lock for the whole round trip, so one slow request would hold up every other of the
# process. Instead replies come back on RabbitMQ's direct reply-to pseudo-queue through
# one consumer FastStream does not know about, and each finds its caller by correlation
# id. Direct reply-to wants the consumer on the channel the requests are published on:
# `broker.declare_queue` and `broker.publish` both use the broker's default channel.

DIRECT_REPLY_TO = RABBIT_REPLY.name
"""The `reply_to` of a request whose reply `consume_direct_replies` receives."""


async def consume_direct_replies(broker: RabbitBroker, on_reply: Callable[[str, bytes], None]) -> None:
    """Starts consuming the replies (no ack: the pseudo-queue has none); `on_reply` gets
    each one's correlation id ('' when it has none) and body. Call once per broker."""
    replies = await broker.declare_queue(RABBIT_REPLY)

    async def deliver(message: AbstractIncomingMessage) -> None:
        on_reply(message.correlation_id or "", message.body)

    await replies.consume(deliver, no_ack=True)


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
