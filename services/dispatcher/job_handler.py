"""The broker side of one delivery: read, dispatch, publish, then ack (or hand back).

A delivery is one job or a batch of them (ingest's group commit); the jobs of a batch are
dispatched concurrently, as separate jobs would be, the small live ones a provider batch
at a time (`JobDispatcher.dispatch_many`). The delivery is acknowledged only after
every message its jobs' attempts produced (their outcome events, as one message; retries,
dead letters) is confirmed by the broker. It is handed back whole (nack with requeue, no
attempt spent) when the provider refuses the whole account or when Redis or RabbitMQ fail
under any of its jobs: the jobs already sent are settled in their send markers, so the
redelivery publishes their outcomes (same event ids) without sending them again. A job
that cannot be read, or that the dispatcher fails on otherwise, is dead-lettered alone.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from redis.exceptions import RedisError

from services.dispatcher.acknowledger import Acknowledger
from services.dispatcher.circuit_breaker import CircuitBreaker
from services.dispatcher.job_dispatcher import DispatchResult, JobDispatcher
from services.dispatcher.job_reader import delivered_before, read_jobs
from services.dispatcher.metrics import DispatcherMetrics
from services.dispatcher.outbox import Outbox
from services.dispatcher.provider import ProviderAccountError
from shared.contracts import DeadLetter, SmsJob
from shared.log import get_logger
from shared.rabbitmq import AMQPError, ChannelInvalidStateError, RawDelivery

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
        self._done = metrics.jobs.labels("done")

    async def handle(self, message: RawDelivery) -> None:
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

    async def _handle(self, message: RawDelivery) -> None:
        items = read_jobs(message.body)
        redelivered = message.redelivered or delivered_before(message.headers or {})
        jobs = [item for item in items if isinstance(item, SmsJob)]
        unreadable = [item for item in items if isinstance(item, DeadLetter)]
        # Every job runs to its end, even when another fails: a job cancelled between its
        # claim and its record would leave recipients whose outcome is unknown.
        answers = await self._dispatch_all(jobs, redelivered)
        account_errors = [a for a in answers if isinstance(a, ProviderAccountError)]
        if account_errors:
            # The whole delivery goes back: the jobs that were sent are settled in their
            # markers, so the redelivery publishes their outcomes without sending again.
            self._breaker.trip(account_errors[0].state)
            await self._acks.nack(message)
            self._metrics.jobs.labels("requeued").inc()
            return
        for answer in answers:
            if isinstance(answer, INFRASTRUCTURE_ERRORS):
                raise answer  # `handle` hands the whole delivery back
        results: list[tuple[SmsJob, DispatchResult]] = []
        for job, answer in zip(jobs, answers, strict=True):
            if isinstance(answer, DispatchResult):
                results.append((job, answer))
            elif isinstance(answer, Exception):
                # A job this dispatcher cannot dispatch must not hold up its batch: it is
                # dead-lettered alone. Recipients it sent are settled in their markers, so
                # a replay does not send them again.
                unreadable.append(_failed_dead_letter(job, answer))
            else:
                raise answer  # a BaseException (cancellation): nothing is acknowledged
        await self._outbox.publish_results([result for _, result in results], dead_letters=unreadable)
        await self._acks.ack(message)  # only now: its events are confirmed
        for letter in unreadable:
            self._metrics.jobs.labels("invalid").inc()
            self._metrics.dead_lettered.labels(letter.reason).inc()
            log.warning(
                "invalid job dead-lettered",
                detail=letter.detail,
                message_id=str(letter.message_id) if letter.message_id else None,
            )
        self._account(results)
        self._dispatcher.settled(results)

    async def _dispatch_all(self, jobs: list[SmsJob], redelivered: bool) -> list[DispatchResult | BaseException]:
        if len(jobs) == 1:  # the common case without group commit: no gather machinery
            try:
                return [await self._dispatcher.dispatch(jobs[0], redelivered=redelivered)]
            except Exception as exc:
                return [exc]
        return await self._dispatcher.dispatch_many(jobs, redelivered=redelivered)

    def _account(self, results: list[tuple[SmsJob, DispatchResult]]) -> None:
        """The delivery's jobs in the metrics, each counter once a delivery (a labelled
        counter's lookup and lock per job were a noticeable cost with many small jobs),
        and the logs of what did not simply go out."""
        if not results:
            return
        metrics = self._metrics
        now = datetime.now(UTC)
        recipients: dict[tuple[str, str, str], int] = {}
        for job, result in results:
            if job.attempt == 1:
                metrics.accept_to_send.observe(max(0.0, (now - job.accepted_at).total_seconds()))
            traffic = "test" if job.test else "live"
            for status, count in result.counts.items():
                labels = (job.project, status, traffic)
                recipients[labels] = recipients.get(labels, 0) + count
            self._report_job(job, result)
        for labels, count in recipients.items():
            metrics.recipients.labels(*labels).inc(count)
        self._done.inc(len(results))

    def _report_job(self, job: SmsJob, result: DispatchResult) -> None:
        """The job's own metrics and log lines: held, retrying, dead-lettered, blocked."""
        metrics = self._metrics
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

    async def _hand_back(self, message: RawDelivery) -> None:
        try:
            await self._acks.nack(message)
        except (AMQPError, ChannelInvalidStateError, ConnectionError) as exc:
            # The channel is gone; the broker requeues everything unacknowledged on it.
            log.warning(
                "could not hand the job back; the broker will redeliver it",
                error=type(exc).__name__,
            )


def _failed_dead_letter(job: SmsJob, error: Exception) -> DeadLetter:
    return DeadLetter(
        reason="invalid_job",
        detail=f"the dispatcher failed on this job ({type(error).__name__}); its other jobs went on",
        dead_lettered_at=datetime.now(UTC),
        message_id=job.message_id,
        attempts=job.attempt,
        job=job,
    )
