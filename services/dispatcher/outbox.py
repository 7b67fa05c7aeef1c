"""Everything the dispatcher publishes, each with a publisher confirm before it returns:
outcome events, retries into the delay queues, dead letters."""

from __future__ import annotations

import asyncio

from faststream.rabbit import RabbitBroker

from services.dispatcher.job_dispatcher import DispatchResult
from shared.contracts import Contract, DeadLetter
from shared.topology import DEAD_LETTER_QUEUE, OUTCOMES_EXCHANGE, retry_queue

JSON = "application/json"


class Outbox:
    def __init__(self, broker: RabbitBroker, timeout_seconds: float) -> None:
        self._broker = broker
        self._timeout = timeout_seconds

    async def publish_result(self, result: DispatchResult) -> None:
        """Returns once the broker confirmed every message the attempt produced."""
        sends = [self._publish(result.event, exchange=OUTCOMES_EXCHANGE.name, routing_key="")]
        if result.retry is not None:
            sends.append(
                self._publish(result.retry, routing_key=retry_queue(result.retry_delay_ms).name)
            )
        if result.dead_letter is not None:
            sends.append(self.publish_dead_letter(result.dead_letter))
        await asyncio.gather(*sends)

    async def publish_dead_letter(self, dead_letter: DeadLetter) -> None:
        await self._publish(dead_letter, routing_key=DEAD_LETTER_QUEUE.name)

    async def _publish(self, message: Contract, *, routing_key: str, exchange: str = "") -> None:
        await self._broker.publish(
            message.model_dump_json().encode(),
            exchange=exchange or None,
            routing_key=routing_key,
            persist=True,
            mandatory=True,
            content_type=JSON,
            message_id=str(getattr(message, "event_id", "")) or None,
            timeout=self._timeout,
        )
