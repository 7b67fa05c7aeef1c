"""Publishing accepted jobs to RabbitMQ: persistent, mandatory, confirmed, or not at all.

The job goes to the `rsms.accepted` fanout exchange, which routes it to the dispatcher's
queue and the ledger's audit queue; the broker confirms only when both have it. The caller
answers `queued` only after that confirm.
"""

from __future__ import annotations

import asyncio

from faststream.rabbit import RabbitBroker

from shared.contracts import SmsJob
from shared.errors import ErrorCode, GatewayError
from shared.rabbitmq import AMQPError, publish_confirmed
from shared.topology import ACCEPTED_EXCHANGE

BROKER_UNAVAILABLE = "The message broker is unavailable; nothing was queued. Retry shortly"


class JobPublisher:
    def __init__(self, broker: RabbitBroker, *, timeout: float) -> None:
        self._broker = broker
        self._timeout = timeout

    async def publish(self, job: SmsJob) -> None:
        try:
            async with asyncio.timeout(self._timeout):
                confirm = await self._broker.publish(
                    job.model_dump_json().encode(),
                    exchange=ACCEPTED_EXCHANGE,
                    persist=True,
                    mandatory=True,
                    message_id=str(job.message_id),
                    content_type="application/json",
                    message_type="SmsJob/1",
                )
        except (TimeoutError, AMQPError, ConnectionError, RuntimeError) as exc:
            raise GatewayError(ErrorCode.INTERNAL_ERROR, BROKER_UNAVAILABLE, retry_after=1) from exc
        if not publish_confirmed(confirm):
            raise GatewayError(ErrorCode.INTERNAL_ERROR, BROKER_UNAVAILABLE, retry_after=1)
