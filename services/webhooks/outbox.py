"""What the webhook sender publishes: deliveries to a delay queue, dead letters; each
persistent and confirmed by the broker before the call returns."""

from __future__ import annotations

from faststream.rabbit import RabbitBroker

from shared.contracts import Contract, WebhookDeadLetter, WebhookDelivery
from shared.topology import WEBHOOK_DEAD_LETTER_QUEUE, webhook_retry_queue


class WebhookOutbox:
    def __init__(self, broker: RabbitBroker, timeout_seconds: float) -> None:
        self._broker = broker
        self._timeout = timeout_seconds

    async def retry_later(self, delivery: WebhookDelivery, delay_ms: int) -> None:
        await self._publish(delivery, webhook_retry_queue(delay_ms).name)

    async def dead_letter(self, letter: WebhookDeadLetter) -> None:
        await self._publish(letter, WEBHOOK_DEAD_LETTER_QUEUE.name)

    async def _publish(self, message: Contract, queue: str) -> None:
        await self._broker.publish(
            message.model_dump_json().encode(),
            queue=queue,
            persist=True,
            mandatory=True,
            timeout=self._timeout,
            content_type="application/json",
        )
