"""Queue depths for the metrics: how much work waits on RabbitMQ, read every few seconds."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence

from aio_pika.exceptions import AMQPError
from aiormq.exceptions import ChannelInvalidStateError
from faststream.rabbit import RabbitBroker, RabbitQueue

from shared.log import get_logger

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
            try:
                declared = await broker.declare_queue(queue)
                depth = (await declared.declare()).message_count
            # A closed channel (the connection is being restored) raises a RuntimeError kind.
            except (AMQPError, ChannelInvalidStateError, ConnectionError) as error:
                log.debug("queue_depth_unknown", queue=queue.name, error=str(error))
                continue
            record(queue.name, depth or 0)
        await asyncio.sleep(interval)
