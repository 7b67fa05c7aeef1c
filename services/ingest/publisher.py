"""Publishing accepted jobs to RabbitMQ: persistent, mandatory, confirmed, or not at all.

The job goes to the `rsms.accepted` fanout exchange, which routes it to the dispatcher's
queue and the ledger's audit queue; the broker confirms only when both have it. The caller
answers `queued` only after that confirm.

Jobs accepted close together share one message and one confirm (group commit,
`publish_groups.py`): a plain `SmsJob` when a job goes alone, an `SmsJobBatch` otherwise.
A failed publish fails every job of its message, each with the contract's error.
"""

from __future__ import annotations

import asyncio

from faststream.rabbit import RabbitBroker

from services.ingest.accepted_job import AcceptedJob, job_json
from services.ingest.metrics import IngestMetrics
from services.ingest.publish_groups import GroupCommitter, GroupLimits, GroupMessage
from shared.errors import ErrorCode, GatewayError
from shared.rabbitmq import AMQPError, publish_confirmed
from shared.topology import ACCEPTED_EXCHANGE

BROKER_UNAVAILABLE = "The message broker is unavailable; nothing was queued. Retry shortly"
PUBLISH_ERRORS = (TimeoutError, AMQPError, ConnectionError, RuntimeError)


class PublishRefused(Exception):
    """The broker answered the publish with something other than an ack (a nack)."""


class JobPublisher:
    def __init__(
        self,
        broker: RabbitBroker,
        *,
        timeout: float,
        limits: GroupLimits | None = None,
        metrics: IngestMetrics | None = None,
    ) -> None:
        self._broker = broker
        self._timeout = timeout
        self._metrics = metrics
        self._groups = GroupCommitter(self._publish_message, limits or GroupLimits())

    async def publish(self, job: AcceptedJob) -> None:
        try:
            await self._groups.submit(job_json(job), str(job.message_id))
        except (PublishRefused, *PUBLISH_ERRORS) as exc:
            # A new error per caller: the callers of one group share the cause, not the raise.
            raise GatewayError(ErrorCode.INTERNAL_ERROR, BROKER_UNAVAILABLE, retry_after=1) from exc

    async def close(self) -> None:
        """Publishes what is grouped and waits for the confirms under way."""
        await self._groups.close()

    async def _publish_message(self, message: GroupMessage) -> None:
        async with asyncio.timeout(self._timeout):
            confirm = await self._broker.publish(
                message.body,
                exchange=ACCEPTED_EXCHANGE,
                persist=True,
                mandatory=True,
                message_id=message.message_id,
                content_type="application/json",
                message_type=message.message_type,
            )
        if not publish_confirmed(confirm):
            raise PublishRefused(type(confirm).__name__)
        if self._metrics is not None:
            self._metrics.published_messages.inc()
            self._metrics.published_jobs.inc(message.jobs)
