"""`JobDispatcher.dispatch_many`: the small live jobs of one delivery go together (one claim,
one provider call, one record a provider batch's worth), and each job ends as `dispatch`
alone would end it: the same outcomes, markers, holds, retries and errors.

The dispatcher's own logic with real send markers (Redis) and a scripted provider.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest
from redis.asyncio import Redis
from redis.exceptions import RedisError

from services.dispatcher.job_dispatcher import DispatchResult, JobDispatcher
from services.dispatcher.provider import Delivery, DeliveryStatus, OutboundBatch, ProviderAccountError
from services.dispatcher.receipts import SentPart
from services.dispatcher.retry_policy import RetryPolicy
from services.dispatcher.send_markers import SendMarkers, marker_key
from services.dispatcher.test_traffic_provider import TestTrafficProvider
from shared.blocklist import Blocklist
from shared.contracts import SmsJob
from shared.provider_state import ProviderState
from tests.dispatcher.harness import make_job, numbers

UNSURE, BLOCKED, FLAKY = "+4791000001", "+4791000002", "+4791000003"


class ScriptedProvider:
    """Answers per recipient: UNSURE unknown, BLOCKED blocked, FLAKY transient, the rest
    sent (with a carrier id each). Records every call, or refuses the account."""

    resends_are_safe = False

    def __init__(self) -> None:
        self.calls: list[list[OutboundBatch]] = []
        self.refuse = False

    @property
    def given(self) -> list[str]:
        return [r for call in self.calls for batch in call for r in batch.recipients]

    async def send(self, batches: Sequence[OutboundBatch]) -> list[list[Delivery]]:
        if self.refuse:
            raise ProviderAccountError(ProviderState.NO_CREDITS, "out of credits")
        self.calls.append(list(batches))
        return [[self._answer(r, ref) for r, ref in zip(b.recipients, b.references, strict=True)] for b in batches]

    @staticmethod
    def _answer(recipient: str, reference: str) -> Delivery:
        if recipient == UNSURE:
            return Delivery(DeliveryStatus.UNKNOWN, detail="no answer")
        if recipient == BLOCKED:
            return Delivery(DeliveryStatus.BLOCKED, detail="barred")
        if recipient == FLAKY:
            return Delivery(DeliveryStatus.TRANSIENT, detail="try later")
        return Delivery(DeliveryStatus.SENT, f"ref-{reference}", carrier_ids=(f"c-{reference}",))

    async def account_state(self) -> ProviderState:
        return ProviderState.OK

    async def close(self) -> None:
        return None


class Expectations:
    """The receipt sink's side: what each write was asked to remember."""

    def __init__(self) -> None:
        self.writes: list[list[str]] = []

    async def expect(self, job: SmsJob, recipients: Sequence[str], deliveries: Sequence[Delivery]) -> None:
        await self.expect_many([(job, recipients, deliveries)])

    async def expect_many(self, sent: Sequence[tuple[SmsJob, Sequence[str], Sequence[Delivery]]]) -> None:
        from services.dispatcher.receipts import sent_parts

        parts: dict[str, SentPart] = {}
        for job, recipients, deliveries in sent:
            parts.update(sent_parts(job, recipients, deliveries))
        if parts:
            self.writes.append(sorted(p.recipient for p in parts.values()))


def dispatcher(
    redis: Redis, provider: ScriptedProvider, batch_size: int = 10, receipts: Expectations | None = None
) -> JobDispatcher:
    return JobDispatcher(
        provider,
        TestTrafficProvider(),
        SendMarkers(redis, ttl_seconds=60),
        Blocklist(redis),
        RetryPolicy(3, (100,)),
        batch_size=batch_size,
        receipts=receipts,
    )


def outcomes(result: DispatchResult | BaseException) -> dict[str, tuple[str, str | None]]:
    assert isinstance(result, DispatchResult), result
    return {o.recipient: (o.status, o.provider_reference) for o in result.event.outcomes}


async def markers_of(redis: Redis, jobs: Sequence[SmsJob]) -> list[dict[str, str]]:
    return [await redis.hgetall(marker_key(job.message_id)) for job in jobs]


async def test_small_live_jobs_go_to_the_provider_together_and_end_as_each_would_alone(redis_url):
    redis = Redis.from_url(redis_url, decode_responses=True)
    receipts = Expectations()
    provider = ScriptedProvider()
    jobs = [make_job([r]) for r in numbers(5, start=700)]
    try:
        results = await dispatcher(redis, provider, receipts=receipts).dispatch_many(jobs)
        # One provider call with one batch a job, one receipt write, one claim and record each.
        assert len(provider.calls) == 1 and [b.recipients for b in provider.calls[0]] == [j.recipients for j in jobs]
        assert receipts.writes == [sorted(r for j in jobs for r in j.recipients)]
        for job, result in zip(jobs, results, strict=True):
            reference = f"ref-{job.message_id.hex}-{job.recipients[0][1:]}"
            assert outcomes(result) == {job.recipients[0]: ("sent", reference)}
            assert isinstance(result, DispatchResult) and result.retry is None and result.held is None
        assert await markers_of(redis, jobs) == [
            {job.recipients[0]: f"s:ref-{job.message_id.hex}-{job.recipients[0][1:]}"} for job in jobs
        ]

        # Delivered again (the ack was lost): the same outcomes from the markers, nothing sent.
        again = await dispatcher(redis, provider).dispatch_many(jobs, redelivered=True)
        assert len(provider.calls) == 1
        assert [outcomes(a) for a in again] == [outcomes(r) for r in results]
    finally:
        await redis.aclose()


PRIOR = {"sent before": "s:earlier", "held before": "u:0", "in flight": "p"}


async def delivery_with_every_verdict(redis: Redis) -> list[SmsJob]:
    """Seven single-recipient jobs: one never claimed, three whose markers an earlier
    attempt left (`PRIOR`), and three the provider answers unknown, blocked, transient."""
    jobs = [make_job([r]) for r in [*numbers(4, start=800), UNSURE, BLOCKED, FLAKY]]
    for job, marker in zip(jobs[1:4], PRIOR.values(), strict=True):
        await redis.hset(marker_key(job.message_id), job.recipients[0], marker)
    return jobs


async def test_mixed_verdicts_in_one_group_each_job_ends_as_dispatch_alone_ends_it(redis_url):
    redis = Redis.from_url(redis_url, decode_responses=True)
    together, alone = ScriptedProvider(), ScriptedProvider()
    try:
        jobs = await delivery_with_every_verdict(redis)
        results = await dispatcher(redis, together).dispatch_many(jobs)
        # Only those whose claim said "send" went to the provider, in one call.
        assert len(together.calls) == 1
        assert together.given == [jobs[0].recipients[0], UNSURE, BLOCKED, FLAKY]

        fresh, sent_before, held_before, in_flight, unsure, blocked, flaky = results
        assert outcomes(fresh) == {
            jobs[0].recipients[0]: ("sent", f"ref-{jobs[0].message_id.hex}-{jobs[0].recipients[0][1:]}")
        }
        assert outcomes(sent_before) == {jobs[1].recipients[0]: ("sent", "earlier")}
        for job, result in zip((jobs[2], jobs[3], jobs[4]), (held_before, in_flight, unsure), strict=True):
            assert isinstance(result, DispatchResult) and result.held is not None and result.held.job is not None
            assert result.held.job.recipients == job.recipients
            assert outcomes(result) == {job.recipients[0]: ("dead_lettered", None)}
        assert isinstance(blocked, DispatchResult) and blocked.newly_blocked == [BLOCKED]
        assert outcomes(blocked) == {BLOCKED: ("failed", None)}
        assert isinstance(flaky, DispatchResult) and flaky.retry is not None
        assert flaky.retry.recipients == [FLAKY] and flaky.retry.attempt == 2
        stored = await markers_of(redis, jobs)
        assert stored == [
            {jobs[0].recipients[0]: f"s:ref-{jobs[0].message_id.hex}-{jobs[0].recipients[0][1:]}"},
            {jobs[1].recipients[0]: "s:earlier"},
            {jobs[2].recipients[0]: "u:0"},
            {jobs[3].recipients[0]: "u:0"},  # its unknown outcome is held now
            {UNSURE: "u:0"},
            {BLOCKED: "b"},
            {FLAKY: "t"},
        ]

        # The same delivery once more (new message ids, the same earlier markers), each job
        # through `dispatch` on its own: every job ends the same way.
        await redis.flushdb()
        copies = await delivery_with_every_verdict(redis)
        one_by_one = [await dispatcher(redis, alone).dispatch(job) for job in copies]
        assert [b.recipients for call in alone.calls for b in call] == [[r] for r in together.given]

        def same(result: DispatchResult | BaseException, job: SmsJob) -> tuple[object, ...]:
            assert isinstance(result, DispatchResult)
            event = result.event
            return (
                [(o.recipient, o.status, o.cost, o.error_code, o.error_message) for o in event.outcomes],
                (event.attempt, event.replay, event.project, event.test),
                result.retry.recipients if result.retry else None,
                result.held.job.recipients if result.held and result.held.job else None,
                result.dead_letter,
                result.newly_blocked,
                result.counts,
            )

        assert [same(r, j) for r, j in zip(one_by_one, copies, strict=True)] == [
            same(r, j) for r, j in zip(results, jobs, strict=True)
        ]
        assert [set(m.values()) for m in await markers_of(redis, copies[1:])] == [set(m.values()) for m in stored[1:]]
    finally:
        await redis.aclose()


async def test_an_account_refusal_reaches_every_job_of_the_group_and_the_redelivery_sends_them(redis_url):
    redis = Redis.from_url(redis_url, decode_responses=True)
    provider = ScriptedProvider()
    provider.refuse = True
    jobs = [make_job([r]) for r in numbers(4, start=900)]
    try:
        results = await dispatcher(redis, provider).dispatch_many(jobs)
        assert all(isinstance(r, ProviderAccountError) for r in results)
        # Nothing was sent: each recipient may be sent by the redelivery, also over SMPP.
        assert await markers_of(redis, jobs) == [{job.recipients[0]: "t"} for job in jobs]

        provider.refuse = False
        again = await dispatcher(redis, provider).dispatch_many(jobs, redelivered=True)
        assert provider.given == [job.recipients[0] for job in jobs]
        assert all(outcomes(a)[job.recipients[0]][0] == "sent" for job, a in zip(jobs, again, strict=True))
    finally:
        await redis.aclose()


async def test_groups_are_one_provider_batch_and_other_jobs_go_their_own_way(redis_url):
    redis = Redis.from_url(redis_url, decode_responses=True)
    provider = ScriptedProvider()
    small = [make_job(numbers(2, start=1000 + 10 * i)) for i in range(3)]
    big = make_job(numbers(7, start=1100))  # more than one provider batch of 4
    test = make_job(numbers(1, start=1200), test=True)
    jobs = [small[0], big, small[1], test, small[2]]
    try:
        results = await dispatcher(redis, provider, batch_size=4).dispatch_many(jobs)
        for job, result in zip(jobs, results, strict=True):
            assert isinstance(result, DispatchResult) and result.event.message_id == job.message_id
            assert set(outcomes(result)) == set(job.recipients)
            assert {status for status, _ in outcomes(result).values()} == {"sent"}
        # The two-recipient jobs go two to a call; the big job in batches of 4; the test job
        # never reaches the live provider.
        sizes = sorted(sum(len(b.recipients) for b in call) for call in provider.calls)
        assert sizes == [2, 3, 4, 4]
        assert set(provider.given) == {r for job in jobs if not job.test for r in job.recipients}
        assert len(provider.given) == len(set(provider.given))
    finally:
        await redis.aclose()


class AnsweredLater(ScriptedProvider):
    def __init__(self) -> None:
        super().__init__()
        self.answer = asyncio.Event()
        self.submitted = asyncio.Event()

    async def send(self, batches: Sequence[OutboundBatch]) -> list[list[Delivery]]:
        self.calls.append(list(batches))
        self.submitted.set()
        await self.answer.wait()
        return [[Delivery(DeliveryStatus.SENT, "p-1") for _ in b.recipients] for b in batches]


async def test_a_message_being_sent_here_waits_for_its_outcome_whichever_path_each_takes(redis_url):
    """A redelivery (or a second copy in the same delivery) while the first is at the
    provider waits for its record, then publishes it as sent: neither held nor resent."""
    redis = Redis.from_url(redis_url, decode_responses=True)
    provider = AnsweredLater()
    one = dispatcher(redis, provider)
    first, other = make_job(numbers(1, start=1300)), make_job(numbers(1, start=1310))
    try:
        sending = asyncio.create_task(one.dispatch_many([first, other, first]))
        await provider.submitted.wait()
        redelivered = asyncio.create_task(one.dispatch_many([first, other], redelivered=True))
        alone = asyncio.create_task(one.dispatch(first, redelivered=True))
        await asyncio.sleep(0.05)
        assert not redelivered.done() and not alone.done()
        provider.answer.set()
        answers = [*await sending, *await redelivered, await alone]
        assert provider.given == [first.recipients[0], other.recipients[0]]
        for answer in answers:
            assert isinstance(answer, DispatchResult) and answer.held is None
            assert {status for status, _ in outcomes(answer).values()} == {"sent"}
        assert one._sending == {}
    finally:
        await redis.aclose()


async def test_a_redis_failure_reaches_every_job_of_the_group_and_nothing_is_sent():
    broken = Redis(host="127.0.0.1", port=1, decode_responses=True)  # nothing listens there
    provider = ScriptedProvider()
    work = dispatcher(broken, provider)
    jobs = [make_job([r]) for r in numbers(3, start=1400)]
    try:
        results = await work.dispatch_many(jobs)
        assert all(isinstance(r, RedisError) for r in results), results  # the handler hands it back
        assert provider.calls == [] and work._sending == {}
    finally:
        await broken.aclose()


@pytest.mark.parametrize("count", [0, 1])
async def test_an_empty_or_single_delivery(redis_url, count):
    redis = Redis.from_url(redis_url, decode_responses=True)
    provider = ScriptedProvider()
    jobs = [make_job([r]) for r in numbers(count, start=1500)]
    try:
        results = await dispatcher(redis, provider).dispatch_many(jobs)
        assert len(results) == count
        assert all(isinstance(r, DispatchResult) for r in results)
    finally:
        await redis.aclose()
