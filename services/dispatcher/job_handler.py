"""The broker side of one delivered job: read, dispatch, publish, then ack (or hand back).

A job is acknowledged only after every message its attempt produced (outcome event,
retry, dead letter) is confirmed by the broker. It is handed back untouched (nack with
requeue, no attempt spent) when the provider refuses the whole account or when Redis or
RabbitMQ fail under it; a job that cannot be read is dead-lettered at once.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from faststream.rabbit.message import RabbitMessage
from redis.exceptions import RedisError

from services.dispatcher.acknowledger import Acknowledger
from services.dispatcher.circuit_breaker import CircuitBreaker
from services.dispatcher.job_dispatcher import JobDispatcher
from services.dispatcher.job_reader import delivered_before, read_job
from services.dispatcher.metrics import DispatcherMetrics
from services.dispatcher.outbox import Outbox
from services.dispatcher.provider import ProviderAccountError
from shared.contracts import DeadLetter
from shared.log import get_logger
from shared.rabbitmq import AMQPError, ChannelInvalidStateError, was_redelivered

log = get_logger(__name__)

# Redis or RabbitMQ away (or a publish confirm that never came): the job goes back.
INFRASTRUCTURE_ERRORS = (
    RedisError,
    AMQPError,
    ChannelInvalidStateError,
    ConnectionError,
    TimeoutError,
)


class JobHandler:
    def __init__(
        self,
        dispatcher: JobDispatcher,
        outbox: Outbox,
        breaker: CircuitBreaker,
        metrics: DispatcherMetrics,
        infrastructure_backoff_seconds: float,
        acknowledger: Acknowledger,
    ) -> None:
        self._acks = acknowledger
        self._dispatcher = dispatcher
        self._outbox = outbox
        self._breaker = breaker
        self._metrics = metrics
        self._backoff = infrastructure_backoff_seconds

    async def handle(self, message: RabbitMessage) -> None:
        metrics = self._metrics
        if self._breaker.is_open:
            # Delivered before the consumer was cancelled: back to the queue, untouched.
            await self._acks.nack(message)
            metrics.jobs.labels("requeued").inc()
            return
        metrics.in_flight.inc()
        try:
            await self._handle(message)
        except INFRASTRUCTURE_ERRORS as exc:
            log.warning(
                "job handed back: infrastructure failed",
                error=type(exc).__name__,
                detail=str(exc)[:200],
            )
            metrics.jobs.labels("requeued").inc()
            await asyncio.sleep(self._backoff)  # a broken Redis must not become a hot loop
            await self._hand_back(message)
        finally:
            metrics.in_flight.dec()

    async def _handle(self, message: RabbitMessage) -> None:
        job = read_job(message.body)
        if isinstance(job, DeadLetter):
            await self._outbox.publish_dead_letter(job)
            await self._acks.ack(message)
            self._metrics.jobs.labels("invalid").inc()
            self._metrics.dead_lettered.labels(job.reason).inc()
            log.warning("invalid job dead-lettered", detail=job.detail)
            return
        try:
            redelivered = was_redelivered(message) or delivered_before(message.headers or {})
            result = await self._dispatcher.dispatch(job, redelivered=redelivered)
        except ProviderAccountError as exc:
            self._breaker.trip(exc.state)
            await self._acks.nack(message)
            self._metrics.jobs.labels("requeued").inc()
            return
        await self._outbox.publish_result(result)
        await self._acks.ack(message)  # only now: its events are confirmed
        if job.attempt == 1:
            lag = (datetime.now(UTC) - job.accepted_at).total_seconds()
            self._metrics.accept_to_send.observe(max(0.0, lag))

        metrics = self._metrics
        traffic = "test" if job.test else "live"
        for status, count in result.counts.items():
            metrics.recipients.labels(job.project, status, traffic).inc(count)
        metrics.jobs.labels("done").inc()
        if result.held is not None:
            metrics.dead_lettered.labels(result.held.reason).inc()
            log.warning(
                "recipients held for an operator: outcome unknown",
                message_id=str(job.message_id),
                attempt=job.attempt,
                held=len(result.held.job.recipients) if result.held.job else 0,
            )
        if result.retry is not None:
            metrics.retries.inc()
            # `counts` has a "retrying" entry of its own (recipients now retrying).
            log.info(
                "job attempt retrying",
                message_id=str(job.message_id),
                attempt=job.attempt,
                delay_ms=result.retry_delay_ms,
                **result.counts,
            )
        elif result.dead_letter is not None:
            metrics.dead_lettered.labels(result.dead_letter.reason).inc()
            log.warning(
                "job dead-lettered",
                message_id=str(job.message_id),
                attempt=job.attempt,
                **result.counts,
            )
        else:
            log.debug(
                "job dispatched",
                message_id=str(job.message_id),
                attempt=job.attempt,
                **result.counts,
            )
        if result.newly_blocked:
            log.info(
                "recipients added to blocklist",
                message_id=str(job.message_id),
                count=len(result.newly_blocked),
            )

    async def _hand_back(self, message: RabbitMessage) -> None:
        try:
            await self._acks.nack(message)
        except (AMQPError, ChannelInvalidStateError, ConnectionError) as exc:
            # The channel is gone; the broker requeues everything unacknowledged on it.
            log.warning(
                "could not hand the job back; the broker will redeliver it",
                error=type(exc).__name__,
            )
