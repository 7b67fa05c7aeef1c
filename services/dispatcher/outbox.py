"""Everything the dispatcher publishes, each with a publisher confirm before it returns:
outcome events, retries into the delay queues, dead letters, carrier receipts and inbound.

Publishes bypass FastStream's publish path and go to the AMQP channel (aiormq, under
aio-pika's robust channel) of a confirm channel of their own:

- FastStream's path (middlewares, codec, exchange lookup per call) cost more CPU per
  job attempt than the publish itself;
- aio-pika's `Exchange.publish` waits for the socket to drain while holding the channel's
  publish lock, so concurrent jobs' publishes left one per event-loop turn. Here the lock
  is released once the frame is queued (`wait=False`) and concurrent jobs' publishes
  leave together, and the broker confirms them together.

What is guaranteed does not change: every message is persistent and mandatory, and each
caller waits for the broker's confirm of its own messages (a nack raises DeliveryError).
"""

from __future__ import annotations

import asyncio
from typing import cast

import aiormq
from aio_pika.abc import AbstractRobustChannel
from aiormq import spec
from faststream.rabbit import Channel, RabbitBroker

from services.dispatcher.job_dispatcher import DispatchResult
from shared.contracts import Contract, DeadLetter
from shared.rabbitmq import PublishHealth
from shared.topology import DEAD_LETTER_QUEUE, OUTCOMES_EXCHANGE, retry_queue

JSON = "application/json"
PERSISTENT = 2


class Outbox:
    def __init__(self, broker: RabbitBroker, timeout_seconds: float, health: PublishHealth | None = None) -> None:
        self._broker = broker
        self._timeout = timeout_seconds
        self._health = health or PublishHealth()  # refused publishes make the service unready
        # The settings FastStream's default channel has (confirms on, returns not raised),
        # on the broker's robust connection, but not the channel jobs are delivered on.
        self._spec = Channel(publisher_confirms=True)
        self._channel: AbstractRobustChannel | None = None

    async def start(self) -> None:
        """Opens the channel; call once the broker is connected."""
        self._channel = await self._broker.config.channel_manager.get_channel(self._spec)

    async def publish_result(self, result: DispatchResult) -> None:
        """Returns once the broker confirmed every message the attempt produced."""
        event = self._publish(result.event, exchange=OUTCOMES_EXCHANGE.name, routing_key="")
        if result.retry is None and result.dead_letter is None and result.held is None:
            await event  # the common case: one publish, no gather machinery
            return
        sends = [event]
        if result.retry is not None:
            sends.append(self._publish(result.retry, routing_key=retry_queue(result.retry_delay_ms).name))
        if result.dead_letter is not None:
            sends.append(self.publish_dead_letter(result.dead_letter))
        if result.held is not None:
            sends.append(self.publish_dead_letter(result.held))
        await asyncio.gather(*sends)

    async def publish_dead_letter(self, dead_letter: DeadLetter) -> None:
        await self._publish(dead_letter, routing_key=DEAD_LETTER_QUEUE.name)

    async def publish(self, message: Contract, *, exchange: str = "", routing_key: str = "") -> None:
        """Any contract message (receipt events, inbound messages), confirmed before it returns."""
        await self._publish(message, routing_key=routing_key, exchange=exchange)

    async def _publish(self, message: Contract, *, routing_key: str, exchange: str = "") -> None:
        await self._health.watch(self._send(message, routing_key=routing_key, exchange=exchange))

    async def _send(self, message: Contract, *, routing_key: str, exchange: str = "") -> object:
        if self._channel is None:
            raise RuntimeError("Outbox.start() was not called")
        # Asked each time: after a reconnect the robust channel has a new one underneath.
        # aiormq's abstract channel does not declare `wait`; its one implementation does.
        channel = cast(aiormq.Channel, await self._channel.get_underlay_channel())
        return await channel.basic_publish(
            message.model_dump_json().encode(),
            exchange=exchange,
            routing_key=routing_key,
            properties=spec.Basic.Properties(
                content_type=JSON,
                delivery_mode=PERSISTENT,
                message_id=str(getattr(message, "event_id", "")) or None,
            ),
            mandatory=True,
            timeout=self._timeout,
            wait=False,  # the confirm is awaited; the socket drain need not hold the lock
        )
