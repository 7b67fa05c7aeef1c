"""One dispatch attempt of one job: claim, send, record, and say what happens next.

Pure logic over its dependencies (markers, providers, blocklist); the broker side (ack,
publish, requeue) is `job_handler.py`'s.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Protocol, TypeVar

from pydantic import BaseModel

from services.dispatcher.provider import Delivery, DeliveryStatus, OutboundBatch, Provider, ProviderAccountError
from services.dispatcher.retry_policy import RetryPolicy
from services.dispatcher.send_markers import (
    BLOCKED,
    HELD_PREFIX,
    INVALID,
    RETRYABLE,
    SENT_PREFIX,
    Claim,
    MarkerVerdict,
    SendMarkers,
    markers_may_be_lost,
    verdict,
)
from shared.blocklist import Blocklist
from shared.contracts import DeadLetter, OutcomeEvent, RecipientOutcome, SmsJob
from shared.countries import country_of
from shared.errors import ErrorCode

_EVENT_NAMESPACE = uuid.UUID("1f0d5c8e-3d0a-4c59-9a57-7a1bb2f0e6a1")
_ZERO = Decimal(0)

_ALREADY_BLOCKED = Delivery(DeliveryStatus.BLOCKED, detail="provider reported the number as blocked")
_ALREADY_INVALID = Delivery(DeliveryStatus.INVALID, detail="provider reported the number as invalid")
_OUTCOME_UNKNOWN = Delivery(
    DeliveryStatus.UNKNOWN, detail="an earlier attempt may have sent it and its outcome was not recorded"
)


def idempotency_reference(message_id: uuid.UUID, recipient: str) -> str:
    """Stable per message and recipient: every retry and redelivery sends the same one."""
    return f"{message_id.hex}-{recipient[1:]}"


def outcome_event_id(job: SmsJob) -> uuid.UUID:
    """Stable per job attempt, so a redelivered attempt publishes a recognisable duplicate."""
    return uuid.uuid5(_EVENT_NAMESPACE, f"{job.message_id}:{job.replay}:{job.attempt}")


def delivery_from_marker(marker: str) -> Delivery | None:
    """What an earlier attempt already settled, or None if this marker settles nothing."""
    if marker.startswith(SENT_PREFIX):
        return Delivery(DeliveryStatus.SENT, marker[len(SENT_PREFIX) :])
    if marker == BLOCKED:
        return _ALREADY_BLOCKED
    if marker == INVALID:
        return _ALREADY_INVALID
    return None


def marker_for(delivery: Delivery) -> str | None:
    if delivery.status is DeliveryStatus.SENT:
        return f"{SENT_PREFIX}{delivery.provider_reference or ''}"
    if delivery.status is DeliveryStatus.BLOCKED:
        return BLOCKED
    if delivery.status is DeliveryStatus.INVALID:
        return INVALID
    if delivery.status is DeliveryStatus.TRANSIENT:
        return RETRYABLE  # the provider said it did not send it: the retry sends it again
    return None  # unknown: stays claimed until the dispatcher decides (`_send_live`)


def held_marker(replay: int) -> str:
    return f"{HELD_PREFIX}{replay}"


def outcome_unknown_dead_letter(job: SmsJob, held: list[str], now: datetime) -> DeadLetter:
    """The recipients whose send may or may not have happened, for an operator to decide."""
    return DeadLetter(
        reason="outcome_unknown",
        detail=f"{len(held)} recipient(s) may or may not have been sent and the provider "
        "cannot deduplicate a resend: check the provider's records, then `rsms dlq replay` "
        "to send them again or `rsms dlq purge` to drop them",
        dead_lettered_at=now,
        message_id=job.message_id,
        attempts=job.attempt,
        job=job.model_copy(update={"recipients": held}),
    )


_OUTCOME_FIELDS = frozenset(RecipientOutcome.model_fields)
_PYDANTIC_SLOTS = ("__dict__", "__pydantic_fields_set__", "__pydantic_extra__", "__pydantic_private__")
_new = object.__new__
_set = object.__setattr__
_Model = TypeVar("_Model", bound=BaseModel)


def _as_constructed(model: type[_Model], values: dict[str, Any], fields: frozenset[str]) -> _Model:
    """An instance of `model` holding `values` (every field), set up as `model_construct`
    sets one up (`_fast_outcome`, `_fast_event`)."""
    instance = _new(model)
    _set(instance, "__dict__", values)
    _set(instance, "__pydantic_fields_set__", set(fields))
    _set(instance, "__pydantic_extra__", None)
    _set(instance, "__pydantic_private__", None)
    return instance


def _laid_out_as_expected(fields: frozenset[str], expected: set[str]) -> bool:
    """Whether pydantic lays models out as `_as_constructed` relies on (the slots of
    `BaseModel`) and the model has exactly the fields its fast constructor sets."""
    return getattr(BaseModel, "__slots__", ()) == _PYDANTIC_SLOTS and expected == fields


def _fast_outcome(
    *,
    recipient: str,
    country: str,
    status: str,
    segments: int,
    cost: Decimal,
    provider_reference: str | None,
    error_code: str | None,
    error_message: str | None,
) -> RecipientOutcome:
    """`RecipientOutcome.model_construct` with every field given, in a seventh of its time
    (it was the largest Python cost per recipient of a big job): the instance pydantic's
    own would be, set up as `model_construct` sets it up. `outcome_constructor` uses it
    only where pydantic lays models out as this expects, and the dispatcher's tests
    compare the two field for field and byte for byte."""
    return _as_constructed(
        RecipientOutcome,
        {
            "recipient": recipient,
            "country": country,
            "status": status,
            "segments": segments,
            "cost": cost,
            "provider_reference": provider_reference,
            "error_code": error_code,
            "error_message": error_message,
        },
        _OUTCOME_FIELDS,
    )


def outcome_constructor() -> Callable[..., RecipientOutcome]:
    """The fast constructor where pydantic's model layout is the one it relies on (the
    slots of `BaseModel` and these eight fields), else `model_construct`."""
    if _laid_out_as_expected(
        _OUTCOME_FIELDS,
        {
            "recipient",
            "country",
            "status",
            "segments",
            "cost",
            "provider_reference",
            "error_code",
            "error_message",
        },
    ):
        return _fast_outcome
    return RecipientOutcome.model_construct


_construct_outcome = outcome_constructor()

_EVENT_FIELDS = frozenset(OutcomeEvent.model_fields)


def _fast_event(
    *,
    event_id: uuid.UUID,
    message_id: uuid.UUID,
    project: str,
    tag: str,
    sender: str,
    test: bool,
    currency: str,
    attempt: int,
    replay: int,
    occurred_at: datetime,
    outcomes: list[RecipientOutcome],
) -> OutcomeEvent:
    """`OutcomeEvent.model_construct` with every field given, as `_fast_outcome` builds an
    outcome (a job's event cost as much as its outcome): pinned against pydantic's by the
    same tests."""
    return _as_constructed(
        OutcomeEvent,
        {
            "schema_version": 1,
            "event_id": event_id,
            "message_id": message_id,
            "project": project,
            "tag": tag,
            "sender": sender,
            "test": test,
            "currency": currency,
            "attempt": attempt,
            "occurred_at": occurred_at,
            "outcomes": outcomes,
            "replay": replay,
        },
        _EVENT_FIELDS,
    )


def event_constructor() -> Callable[..., OutcomeEvent]:
    """The fast event constructor where pydantic lays models out as it expects (the slots
    of `BaseModel` and the event's twelve fields), else one through `model_construct`."""
    if _laid_out_as_expected(
        _EVENT_FIELDS,
        {
            "schema_version",
            "event_id",
            "message_id",
            "project",
            "tag",
            "sender",
            "test",
            "currency",
            "attempt",
            "occurred_at",
            "outcomes",
            "replay",
        },
    ):
        return _fast_event
    return _constructed_event


def _constructed_event(**fields: Any) -> OutcomeEvent:
    return OutcomeEvent.model_construct(schema_version=1, **fields)


_construct_event = event_constructor()


def _every_one(deliveries: list[Delivery | None]) -> list[Delivery]:
    """The deliveries once every chunk is done: each recipient has one."""
    done = [d for d in deliveries if d is not None]
    if len(done) != len(deliveries):
        raise RuntimeError("a chunk finished without an outcome for each of its recipients")
    return done


class ReceiptExpectations(Protocol):
    """Records what the carrier's receipts will name (`receipts.ReceiptSink.expect`)."""

    async def expect(self, job: SmsJob, recipients: Sequence[str], deliveries: Sequence[Delivery]) -> None: ...

    async def expect_many(self, sent: Sequence[tuple[SmsJob, Sequence[str], Sequence[Delivery]]]) -> None:
        """`expect` for several jobs' batches at once, (job, recipients, deliveries) each."""
        ...


@dataclass
class DispatchResult:
    event: OutcomeEvent
    retry: SmsJob | None = None
    retry_delay_ms: int = 0
    dead_letter: DeadLetter | None = None
    held: DeadLetter | None = None
    """Recipients whose outcome is unknown, held for an operator (reason outcome_unknown)."""
    newly_blocked: list[str] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)


def _outbound(job: SmsJob, recipients: list[str]) -> OutboundBatch:
    return OutboundBatch(
        sender=job.sender,
        text=job.message,
        recipients=recipients,
        references=[idempotency_reference(job.message_id, r) for r in recipients],
    )


class JobDispatcher:
    def __init__(
        self,
        live_provider: Provider,
        test_provider: Provider,
        markers: SendMarkers,
        blocklist: Blocklist,
        retry_policy: RetryPolicy,
        batch_size: int,
        chunks_in_flight: int = 1,
        receipts: ReceiptExpectations | None = None,
        resend_unknown: bool = False,
    ) -> None:
        self._live = live_provider
        self._receipts = receipts
        self._test = test_provider
        self._markers = markers
        self._blocklist = blocklist
        self._retry = retry_policy
        self._batch_size = batch_size
        # Chunks of one job claimed and not yet answered at once: what a crash can leave
        # with an unknown outcome besides answers not yet recorded
        # (`DispatcherSettings.provider_chunking`).
        self._chunks_in_flight = chunks_in_flight
        # Whether a recipient whose outcome is unknown is sent again: always where the
        # provider deduplicates by the reference (it stays one SMS); otherwise only if the
        # operator prefers at-least-once (RSMS_DISPATCHER_UNKNOWN_OUTCOME=resend).
        self._resend_unknown = live_provider.resends_are_safe or resend_unknown
        # The live jobs being sent, by message id: set when done (`_send_live_after_earlier`).
        self._sending: dict[uuid.UUID, asyncio.Event] = {}

    async def dispatch(self, job: SmsJob, redelivered: bool = False) -> DispatchResult:
        """Raises `ProviderAccountError` (nothing recorded as failed) for the circuit breaker.

        `redelivered`: the broker delivered this job before (to a dispatcher that died or
        handed it back), so some of it may have been sent already.
        """
        if job.test:
            deliveries = await self._send_test(job)
        else:
            deliveries = await self._send_live_after_earlier(job, redelivered)
        return await self._finish(job, deliveries)

    async def dispatch_many(
        self, jobs: Sequence[SmsJob], redelivered: bool = False
    ) -> list[DispatchResult | BaseException]:
        """`dispatch` of every job of one delivery, each run to its end whatever the others
        do; answers each job's result, or the exception its dispatch raised, in order (as
        `asyncio.gather(..., return_exceptions=True)` over `dispatch` would).

        The live jobs that each fit one provider batch (single-recipient jobs above all)
        go together, a provider batch's worth of recipients at a time (`_dispatch_together`):
        one claim for all of them, one provider call, one record, instead of a task and
        three waits a job. What each recipient's claim, send and record mean is
        `_send_live`'s, through the same functions. A job whose message is being sent here
        already (a redelivery while the first delivery runs), a test job and a job of
        several provider batches go on `dispatch`'s way.
        """
        together: list[tuple[list[SmsJob], asyncio.Event]] = []
        together_at: list[list[int]] = []
        alone: list[int] = []
        size = self._batch_size
        filling = 0
        sending = self._sending
        for index, job in enumerate(jobs):
            count = len(job.recipients)
            if job.test or count > size or job.message_id in sending:
                alone.append(index)
                continue
            if not together or filling + count > size:
                together.append(([], asyncio.Event()))
                together_at.append([])
                filling = 0
            together[-1][0].append(job)
            together_at[-1].append(index)
            filling += count
            # Taken here, before any wait: a later delivery of the same message waits for
            # this one (`_send_live_after_earlier`), and so does a second copy of it in
            # this delivery (it goes alone).
            sending[job.message_id] = together[-1][1]
        groups: list[Coroutine[Any, Any, list[DispatchResult | BaseException]]] = [
            self._dispatch_together(group, done, redelivered) for group, done in together
        ]
        groups.extend(self._dispatch_alone(jobs[i], redelivered) for i in alone)
        try:
            if len(groups) == 1:
                answered: list[list[DispatchResult | BaseException] | BaseException] = [await groups[0]]
            else:
                answered = await asyncio.gather(*groups, return_exceptions=True)
        finally:
            # Each group releases its jobs when it is done; this only covers a group
            # cancelled before it started (its `finally` never ran).
            for group, done in together:
                self._release(group, done)
        answers: list[DispatchResult | BaseException | None] = [None] * len(jobs)
        for indexes, answer in zip([*together_at, *([i] for i in alone)], answered, strict=True):
            for i, one in zip(indexes, answer if isinstance(answer, list) else [answer] * len(indexes), strict=True):
                answers[i] = one
        return [a if a is not None else RuntimeError("a job was left without an answer") for a in answers]

    async def _dispatch_alone(self, job: SmsJob, redelivered: bool) -> list[DispatchResult | BaseException]:
        try:
            return [await self.dispatch(job, redelivered)]
        except Exception as exc:
            return [exc]

    async def _dispatch_together(
        self, jobs: list[SmsJob], done: asyncio.Event, redelivered: bool
    ) -> list[DispatchResult | BaseException]:
        """Live jobs of one provider batch's worth of recipients, each in `_sending` with
        `done` (`dispatch_many`)."""
        try:
            sent = await self._send_live_together(jobs, redelivered)
        except Exception as exc:
            return [exc] * len(jobs)
        finally:
            self._release(jobs, done)
        results: list[DispatchResult | BaseException] = []
        for job, deliveries in zip(jobs, sent, strict=True):
            try:
                results.append(await self._finish(job, deliveries))
            except Exception as exc:
                results.append(exc)
        return results

    def _release(self, jobs: list[SmsJob], done: asyncio.Event) -> None:
        """The jobs are no longer being sent here: a later delivery of one may claim."""
        if done.is_set():
            return
        for job in jobs:
            if self._sending.get(job.message_id) is done:
                del self._sending[job.message_id]
        done.set()

    async def _send_live_together(self, jobs: list[SmsJob], redelivered: bool) -> list[list[Delivery]]:
        """`_send_live` for jobs whose recipients fit one provider batch together: one
        claim of them all, just before one provider call, then one record of its answers.
        A `ProviderAccountError` (nothing was sent) reaches every job."""
        claims = await self._markers.claim_many([(job.message_id, job.recipients, job.replay) for job in jobs])
        deliveries: list[list[Delivery | None]] = [[None] * len(job.recipients) for job in jobs]
        sending: list[tuple[int, list[str], list[int]]] = []
        for j, (job, claim) in enumerate(zip(jobs, claims, strict=True)):
            to_send = self._to_send(job, range(len(job.recipients)), claim, redelivered, deliveries[j])
            if to_send:
                sending.append((j, [job.recipients[i] for i in to_send], to_send))
        if sending:
            try:
                sent = await self._live.send([_outbound(jobs[j], recipients) for j, recipients, _ in sending])
            except ProviderAccountError:
                # As `_send_batch`: nothing of the call was sent, the redelivery sends it.
                await self._markers.record_many(
                    [(jobs[j].message_id, dict.fromkeys(recipients, RETRYABLE)) for j, recipients, _ in sending]
                )
                raise
            if self._receipts is not None:
                # Before the markers, as `_record_batch`.
                await self._receipts.expect_many(
                    [(jobs[j], recipients, answers) for (j, recipients, _), answers in zip(sending, sent, strict=True)]
                )
            await self._markers.record_many(
                [
                    (
                        jobs[j].message_id,
                        {r: m for r, d in zip(recipients, answers, strict=True) if (m := marker_for(d))},
                    )
                    for (j, recipients, _), answers in zip(sending, sent, strict=True)
                ]
            )
            for (j, _, indexes), answers in zip(sending, sent, strict=True):
                for i, d in zip(indexes, answers, strict=True):
                    deliveries[j][i] = d
        settled = [_every_one(d) for d in deliveries]
        for job, job_deliveries in zip(jobs, settled, strict=True):
            await self._settle_unknown(job, job_deliveries)
        return settled

    async def _finish(self, job: SmsJob, deliveries: list[Delivery]) -> DispatchResult:
        newly_blocked = [
            r for r, d in zip(job.recipients, deliveries, strict=True) if d.status is DeliveryStatus.BLOCKED
        ]
        if newly_blocked:
            await self._blocklist.add(newly_blocked)
        return self._settle(job, deliveries, newly_blocked)

    def settled(self, done: Sequence[tuple[SmsJob, DispatchResult]]) -> None:
        """After the ack of a delivery: the live jobs with nothing left to do (no retry,
        dead letter or held recipients) keep their markers the settled TTL only
        (`SendMarkers.settled`)."""
        finished = [
            job.message_id
            for job, result in done
            if not job.test and result.retry is None and result.dead_letter is None and result.held is None
        ]
        if finished:
            self._markers.settled(finished)

    async def _send_test(self, job: SmsJob) -> list[Delivery]:
        deliveries: list[Delivery | None] = [None] * len(job.recipients)

        async def send(chunk: list[int]) -> None:
            sent = await self._send_batch(self._test, job, [job.recipients[i] for i in chunk], None)
            for i, d in zip(chunk, sent, strict=True):
                deliveries[i] = d

        await self._in_chunks(job, send)
        return _every_one(deliveries)

    async def _send_live_after_earlier(self, job: SmsJob, redelivered: bool) -> list[Delivery]:
        """`_send_live`, once no other delivery of the same message is being sent here.

        After a broker restart the broker redelivers every unacknowledged job at once,
        while this dispatcher may still be sending the first delivery (its handling
        outlives the channel, `JobConsumer`): the first has claimed its recipients ("p")
        and not yet recorded the SMSC's answer. A claim then would see "p", an unknown
        outcome, and hold the recipients for an operator although their outcome is about
        to be recorded. So the later delivery waits for the earlier one here and then
        claims, seeing what it recorded. (Another dispatcher's first delivery is out of
        reach: there the claim sees "p" and holds, as it must.)
        """
        earlier = self._sending.get(job.message_id)
        while earlier is not None:
            await earlier.wait()
            earlier = self._sending.get(job.message_id)
        done = self._sending[job.message_id] = asyncio.Event()
        try:
            return await self._send_live(job, redelivered)
        finally:
            del self._sending[job.message_id]
            done.set()

    async def _send_live(self, job: SmsJob, redelivered: bool) -> list[Delivery]:
        """Claims each chunk just before it goes to the provider, then sends and records it.

        At most `chunks_in_flight` chunks are claimed and not yet answered, so after a crash
        the claimed ("p", outcome unknown) are those the provider may have, and the answers
        not yet recorded; the rest have no marker, which `markers_may_be_lost` tells apart
        from a marker a lost Redis forgot, chunk by chunk (each claim answers its
        generation).
        """
        deliveries: list[Delivery | None] = [None] * len(job.recipients)
        sending = asyncio.Semaphore(self._chunks_in_flight)

        async def claim_and_send(chunk: list[int]) -> None:
            async with sending:
                claim = await self._markers.claim(job.message_id, [job.recipients[i] for i in chunk], job.replay)
                to_send = self._to_send(job, chunk, claim, redelivered, deliveries)
                if not to_send:
                    return
                recipients = [job.recipients[i] for i in to_send]
                sent = await self._send_batch(self._live, job, recipients, self._markers)
            # Answered: the next chunk is claimed (and sent) while this one is recorded.
            await self._record_batch(job, recipients, sent)
            for i, d in zip(to_send, sent, strict=True):
                deliveries[i] = d

        await self._in_chunks(job, claim_and_send)
        settled = _every_one(deliveries)
        await self._settle_unknown(job, settled)
        return settled

    def _to_send(
        self, job: SmsJob, chunk: Sequence[int], claim: Claim, redelivered: bool, deliveries: list[Delivery | None]
    ) -> list[int]:
        """The recipients of `chunk` (indexes into the job's) that its claim says to send;
        the others get their delivery in `deliveries` (settled before, or unknown)."""
        lost = markers_may_be_lost(job.accepted_at, job.attempt, redelivered, claim.generation_since_ms)
        to_send: list[int] = []
        for i, marker in zip(chunk, claim.markers, strict=True):
            match verdict(marker, job.replay, markers_may_be_lost=lost):
                case MarkerVerdict.SEND:
                    to_send.append(i)
                case MarkerVerdict.UNKNOWN if self._resend_unknown:
                    to_send.append(i)
                case MarkerVerdict.UNKNOWN:
                    deliveries[i] = _OUTCOME_UNKNOWN
                case MarkerVerdict.SETTLED:
                    # A held recipient not yet released by a replay stays held.
                    deliveries[i] = delivery_from_marker(marker) or _OUTCOME_UNKNOWN
        return to_send

    async def _settle_unknown(self, job: SmsJob, settled: Sequence[Delivery]) -> None:
        unknown = [r for r, d in zip(job.recipients, settled, strict=True) if d.status is DeliveryStatus.UNKNOWN]
        if unknown:
            # Recorded before the dead letter is published: a redelivery of this attempt
            # holds them again rather than sending them.
            marker = RETRYABLE if self._resend_unknown else held_marker(job.replay)
            await self._markers.settle_unknown(job.message_id, dict.fromkeys(unknown, marker))

    async def _in_chunks(self, job: SmsJob, work: Callable[[list[int]], Coroutine[Any, Any, None]]) -> None:
        """Runs `work` on each provider-sized chunk of the job's recipients, concurrently;
        the first failure (an account error, typically) ends it."""
        indexes = range(len(job.recipients))
        chunks = [list(indexes[i : i + self._batch_size]) for i in range(0, len(indexes), self._batch_size)]
        if len(chunks) == 1:
            await work(chunks[0])
            return
        try:
            async with asyncio.TaskGroup() as group:
                for chunk in chunks:
                    group.create_task(work(chunk))
        except BaseExceptionGroup as grouped:
            # One cause is enough for the caller (the first account error, typically).
            raise grouped.exceptions[0] from grouped

    async def _send_batch(
        self, provider: Provider, job: SmsJob, recipients: list[str], markers: SendMarkers | None
    ) -> list[Delivery]:
        """Sends `recipients` as one provider batch; the deliveries in their order."""
        try:
            (deliveries,) = await provider.send([_outbound(job, recipients)])
        except ProviderAccountError:
            # Raised only when the provider took none of them (`Provider.send`): the
            # redelivery after the outage sends them, also where resends are unsafe.
            if markers is not None:
                await markers.record(job.message_id, dict.fromkeys(recipients, RETRYABLE))
            raise
        return deliveries

    async def _record_batch(self, job: SmsJob, recipients: list[str], deliveries: list[Delivery]) -> None:
        """Records a live batch's outcome as soon as it is known, so a crash later in a big
        job does not send the finished batches again."""
        if self._receipts is not None:
            # Before the markers: a recipient marked sent is never sent again, so its
            # parts must be on record for its receipts by then.
            await self._receipts.expect(job, recipients, deliveries)
        settled = {r: m for r, d in zip(recipients, deliveries, strict=True) if (m := marker_for(d))}
        await self._markers.record(job.message_id, settled)

    def _settle(self, job: SmsJob, deliveries: Sequence[Delivery], newly_blocked: list[str]) -> DispatchResult:
        can_retry = self._retry.can_retry(job.attempt)
        live = not job.test
        segments = job.segments
        outcomes: list[RecipientOutcome] = []
        remaining: list[str] = []
        held: list[str] = []
        counts: dict[str, int] = {}
        construct = _construct_outcome
        for recipient, delivery in zip(job.recipients, deliveries, strict=True):
            country = country_of(recipient)
            status = delivery.status
            if status is DeliveryStatus.SENT:
                cost = segments * job.price_for(country) if live else _ZERO
                outcome = construct(
                    recipient=recipient,
                    country=country,
                    status="sent",
                    segments=segments,
                    cost=cost,
                    provider_reference=delivery.provider_reference,
                    error_code=None,
                    error_message=None,
                )
            elif status is DeliveryStatus.UNKNOWN and not self._resend_unknown:
                held.append(recipient)
                outcome = construct(
                    recipient=recipient,
                    country=country,
                    status="dead_lettered",
                    segments=segments,
                    cost=_ZERO,
                    provider_reference=None,
                    error_code=ErrorCode.PROVIDER_ERROR.value,
                    error_message=delivery.detail,
                )
            elif status in (DeliveryStatus.TRANSIENT, DeliveryStatus.UNKNOWN):
                remaining.append(recipient)
                outcome = construct(
                    recipient=recipient,
                    country=country,
                    status="retrying" if can_retry else "dead_lettered",
                    segments=segments,
                    cost=_ZERO,
                    provider_reference=None,
                    error_code=ErrorCode.PROVIDER_ERROR.value,
                    error_message=delivery.detail,
                )
            else:
                code = ErrorCode.RECIPIENT_BLOCKED if status is DeliveryStatus.BLOCKED else ErrorCode.VALIDATION_ERROR
                outcome = construct(
                    recipient=recipient,
                    country=country,
                    status="failed",
                    segments=segments,
                    cost=_ZERO,
                    provider_reference=None,
                    error_code=code.value,
                    error_message=delivery.detail,
                )
            counts[outcome.status] = counts.get(outcome.status, 0) + 1
            outcomes.append(outcome)
        now = datetime.now(UTC)
        event = _construct_event(
            event_id=outcome_event_id(job),
            message_id=job.message_id,
            project=job.project,
            tag=job.tag,
            sender=job.sender,
            test=job.test,
            currency=job.currency,
            attempt=job.attempt,
            replay=job.replay,
            occurred_at=now,
            outcomes=outcomes,
        )
        result = DispatchResult(event=event, newly_blocked=newly_blocked, counts=counts)
        if held:
            result.held = outcome_unknown_dead_letter(job, held, now)
        if remaining and can_retry:
            result.retry = job.model_copy(update={"recipients": remaining, "attempt": job.attempt + 1})
            result.retry_delay_ms = self._retry.delay_after(job.attempt)
        elif remaining:
            details = {d.detail for d in deliveries if d.status in (DeliveryStatus.TRANSIENT, DeliveryStatus.UNKNOWN)}
            result.dead_letter = DeadLetter(
                reason="attempts_exhausted",
                detail=f"{len(remaining)} recipient(s) still failing after "
                f"{job.attempt} attempt(s): " + "; ".join(sorted(d for d in details if d)),
                dead_lettered_at=now,
                message_id=job.message_id,
                attempts=job.attempt,
                job=job.model_copy(update={"recipients": remaining}),
            )
        return result
