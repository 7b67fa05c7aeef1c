"""Connecting to RabbitMQ at start, patiently: a service waits for the broker, it does not crash.

Once connected, aio-pika's robust connection reconnects by itself; this covers the start,
when RabbitMQ may still be booting (compose, a host restart) or down for a while.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from faststream.rabbit import RabbitBroker

from shared.log import get_logger
from shared.rabbitmq import AMQPError, ChannelPreconditionFailed

log = get_logger(__name__)


async def connect_when_available(
    broker: RabbitBroker,
    setup: Callable[[], Awaitable[None]] | None = None,
    *,
    first_delay: float = 0.5,
    max_delay: float = 10.0,
) -> None:
    """Connect, then run `setup` (declare the topology), retrying both with backoff."""
    delay = first_delay
    while True:
        try:
            await broker.connect()
            if setup is not None:
                await setup()
            log.info("broker_connected")
            return
        except ChannelPreconditionFailed as exc:
            # A queue an older version declared with other arguments: waiting cannot fix it,
            # the operator must (the service starts by itself once it is done).
            log.error(
                "broker_topology_outdated",
                error=str(exc),
                action="stop every service and run `rsms migrate-topology`",
                retry_in_seconds=max_delay,
            )
            await broker.stop()
            await asyncio.sleep(max_delay)
        except (OSError, ConnectionError, AMQPError) as exc:
            log.error("broker_unavailable", error=str(exc), retry_in_seconds=delay)
            await broker.stop()
            await asyncio.sleep(delay)
            delay = min(delay * 2, max_delay)
