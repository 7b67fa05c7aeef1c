"""Taking messages off a queue without ever requeueing them, for operator commands.

A requeue (a reject, or a channel closed with the message unacknowledged) counts against a
quorum queue's delivery limit, which RabbitMQ 4 or a policy applies even to a queue that
sets none: peek often enough and the broker drops the message. So operator commands take a
message, publish a copy (confirmed) where it belongs, back to the tail of the same queue to
keep it, and only then acknowledge the original. The copy is a new message with a delivery
count of zero. A crash between the confirm and the ack leaves the message twice, never none.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar

import aio_pika
import click
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage, AbstractQueue
from aio_pika.exceptions import ChannelNotFoundEntity

from shared.rabbitmq import connect_to_any

T = TypeVar("T")

# Set by the broker on each delivery from a quorum queue; a copy starts afresh.
_BROKER_HEADERS = frozenset({"x-delivery-count"})


def copy_of(message: AbstractIncomingMessage) -> aio_pika.Message:
    """The same body, headers (including `x-death`) and properties, persistent."""
    return aio_pika.Message(
        message.body,
        headers={k: v for k, v in (message.headers or {}).items() if k not in _BROKER_HEADERS},
        content_type=message.content_type,
        content_encoding=message.content_encoding,
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        priority=message.priority,
        correlation_id=message.correlation_id,
        reply_to=message.reply_to,
        message_id=message.message_id,
        timestamp=message.timestamp,
        type=message.type,
        app_id=message.app_id,
    )


async def ready_count(channel: AbstractChannel, name: str) -> int:
    declared = await channel.declare_queue(name, passive=True)
    return int(declared.declaration_result.message_count or 0)


async def take(channel: AbstractChannel, queue: AbstractQueue) -> list[AbstractIncomingMessage]:
    """The messages ready on `queue` now, oldest first, unacknowledged. Only as many as were
    ready when called: copies put back meanwhile are not taken again."""
    taken: list[AbstractIncomingMessage] = []
    for _ in range(await ready_count(channel, queue.name)):
        message = await queue.get(no_ack=False, fail=False)
        if message is None:
            break
        taken.append(message)
    return taken


async def move_to(channel: AbstractChannel, message: AbstractIncomingMessage, routing_key: str) -> None:
    """Publishes a copy to the queue `routing_key` (default exchange), confirmed and routed,
    then acknowledges the original. `channel` must have publisher confirms on."""
    await channel.default_exchange.publish(copy_of(message), routing_key=routing_key, mandatory=True)
    await message.ack()


async def peek(channel: AbstractChannel, queue: AbstractQueue) -> list[AbstractIncomingMessage]:
    """The messages ready on `queue`, oldest first, the queue left as it was: each taken and
    a confirmed copy put back at the tail, in order (never a requeue: see the module doc)."""
    taken = await take(channel, queue)
    for message in taken:
        await move_to(channel, message, queue.name)
    return taken


async def replace_with(
    channel: AbstractChannel, message: AbstractIncomingMessage, body: bytes, routing_key: str
) -> None:
    """Publishes `body` (persistent JSON) to the queue `routing_key`, confirmed and routed,
    then acknowledges `message`, which it replaces (a replay with its attempts reset)."""
    await channel.default_exchange.publish(
        aio_pika.Message(body, content_type="application/json", delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
        routing_key=routing_key,
        mandatory=True,
    )
    await message.ack()


async def move_all(channel: AbstractChannel, source: str, target: str) -> int:
    """Moves every message on `source` to `target`, in order; returns how many."""
    queue = await channel.get_queue(source, ensure=True)
    moved = 0
    while (message := await queue.get(no_ack=False, fail=False)) is not None:
        await move_to(channel, message, target)
        moved += 1
    return moved


async def on_queue(
    amqp_url: str,
    name: str,
    work: Callable[[AbstractChannel, AbstractQueue], Awaitable[T]],
    *,
    missing: str,
) -> T:
    """Runs `work` on the existing queue `name` over a channel with publisher confirms (and
    returns raised), then closes the connection: whatever `work` took and neither moved nor
    acknowledged goes back to the queue. A queue that does not exist is `missing`, said to
    the operator."""
    connection = await connect_to_any(amqp_url)
    try:
        channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
        try:
            queue = await channel.get_queue(name, ensure=True)
        except ChannelNotFoundEntity:
            raise click.ClickException(missing) from None
        return await work(channel, queue)
    finally:
        await connection.close()


def last_death(headers: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The broker's most recent dead-lettering of a message (`x-death` lists the newest
    first: a message that went through a delay queue also carries its `expired` entry);
    None for a message no queue dead-lettered."""
    deaths = headers.get("x-death")
    if isinstance(deaths, list) and deaths and isinstance(deaths[0], Mapping):
        return deaths[0]
    return None
