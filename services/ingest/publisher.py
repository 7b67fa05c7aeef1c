"""Publishing accepted jobs to RabbitMQ: persistent, mandatory, confirmed, or not at all.

The job goes to the `rsms.accepted` fanout exchange, which routes it to the dispatcher's
queue and the ledger's audit queue; the broker confirms only when both have it. The caller
answers `queued` only after that confirm.

Jobs accepted close together share one message and one confirm (group commit,
`publish_groups.py`): a plain `SmsJob` when a job goes alone, an `SmsJobBatch` otherwise.
A failed publish fails every job of its message, each with the contract's error.

The message goes straight to a confirm channel of its own (`shared.rabbitmq.ConfirmedPublisher`),
as the dispatcher's outbox publishes, not through FastStream's publish path (middlewares,
codec, exchange lookup per call): the services' hot publishes take one path, the adapter's.
(In CPU it is even: a group carries about ten jobs under load, so the path's cost per send
was already small; bench/README.md, round 11.) A message no queue took (the broker returns
it, then confirms it) raises, like a nack: a job no queue holds is not queued. While the
connection is down a publish fails at once, as FastStream's did: a client is waiting.
"""

from __future__ import annotations

import asyncio

from faststream.rabbit import RabbitBroker

from services.ingest.accepted_job import AcceptedJob, job_json
from services.ingest.metrics import IngestMetrics
from services.ingest.publish_groups import GroupCommitter, GroupLimits, GroupMessage
from shared.errors import ErrorCode, GatewayError
from shared.rabbitmq import AMQPError, ConfirmedPublisher, PublishHealth
from shared.topology import ACCEPTED_EXCHANGE

BROKER_UNAVAILABLE = "The message broker is unavailable; nothing was queued. Retry shortly"
PUBLISH_ERRORS = (TimeoutError, AMQPError, ConnectionError, RuntimeError)


class JobPublisher:
    def __init__(
        self,
        broker: RabbitBroker,
        *,
        timeout: float,
        limits: GroupLimits | None = None,
        metrics: IngestMetrics | None = None,
        health: PublishHealth | None = None,
    ) -> None:
        self._timeout = timeout
        self._publisher = ConfirmedPublisher(broker, timeout, returns_raise=True, fail_fast=True)
        # These publishes bypass FastStream's middlewares: recorded here, so refused ones
        # make the service unready (and, when stuck, reconnect it to another node).
        self._health = health or PublishHealth()
        self._metrics = metrics
        self._groups = GroupCommitter(self._publish_message, limits or GroupLimits())

    async def open(self) -> None:
        """Opens the confirm channel; call once the broker is connected. Until then every
        publish fails (the contract's error), as it does while the broker is away."""
        await self._publisher.open()

    async def publish(self, job: AcceptedJob) -> None:
        try:
            await self._groups.submit(job_json(job), str(job.message_id))
        except PUBLISH_ERRORS as exc:
            # A new error per caller: the callers of one group share the cause, not the raise.
            raise GatewayError(ErrorCode.INTERNAL_ERROR, BROKER_UNAVAILABLE, retry_after=1) from exc

    async def close(self) -> None:
        """Publishes what is grouped and waits for the confirms under way."""
        await self._groups.close()

    async def _publish_message(self, message: GroupMessage) -> None:
        # Persistent and mandatory; returns once confirmed, raises on a nack or a return.
        # While the connection is down it fails at once (`fail_fast`); the timeout bounds the
        # rest (a connection lost after the check, a confirm that does not come).
        async with asyncio.timeout(self._timeout):
            await self._health.watch(
                self._publisher.publish(
                    message.body,
                    exchange=ACCEPTED_EXCHANGE.name,
                    message_id=message.message_id,
                    message_type=message.message_type,
                )
            )
        if self._metrics is not None:
            self._metrics.published_messages.inc()
            self._metrics.published_jobs.inc(message.jobs)
