"""Queue depths: how much work waits on RabbitMQ, for the metrics (read every few seconds)
and the status page (read when it is opened)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence

from faststream.rabbit import RabbitBroker, RabbitQueue

from shared.log import get_logger
from shared.rabbitmq import AMQPError, ChannelInvalidStateError

log = get_logger(__name__)


async def watch_queue_depths(
    broker: RabbitBroker,
    queues: Sequence[RabbitQueue],
    record: Callable[[str, int], None],
    interval: float,
) -> None:
    """Call `record(queue name, messages ready)` for each queue every `interval` seconds,
    until cancelled. A queue that cannot be read this time is skipped, not fatal: the
    broker may be reconnecting."""
    while True:
        for queue in queues:
            depth = await queue_depth(broker, queue)
            if depth is not None:
                record(queue.name, depth)
        await asyncio.sleep(interval)


async def queue_depth(broker: RabbitBroker, queue: RabbitQueue) -> int | None:
    """Messages ready in `queue`; None when the broker cannot say right now."""
    try:
        declared = await broker.declare_queue(queue)
        depth = (await declared.declare()).message_count
    # A closed channel (the connection is being restored) raises a RuntimeError kind.
    except (AMQPError, ChannelInvalidStateError, ConnectionError) as error:
        log.debug("queue_depth_unknown", queue=queue.name, error=str(error))
        return None
    return depth or 0
