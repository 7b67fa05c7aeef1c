"""A recipient the provider answered UNKNOWN (a bind dropped mid-window, an answer that
never came): resent where the provider deduplicates, held for an operator where it cannot.

The dispatcher's own logic with real send markers (Redis); the provider is a scripted one,
as an SMPP adapter that lost its bind would answer (the end-to-end runs against the
simulator are in test_redis_data_loss.py).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest
from redis.asyncio import Redis

from services.dispatcher.job_dispatcher import JobDispatcher
from services.dispatcher.provider import Delivery, DeliveryStatus, OutboundBatch, ProviderAccountError
from services.dispatcher.retry_policy import RetryPolicy
from services.dispatcher.send_markers import GENERATION_KEY, SendMarkers, marker_key
from services.dispatcher.test_traffic_provider import TestTrafficProvider
from shared.blocklist import Blocklist
from shared.contracts import SmsJob
from shared.provider_state import ProviderState
from tests.dispatcher.harness import make_job, numbers

SURE, UNSURE = "+4790000001", "+4790000002"


class ScriptedProvider:
    """Sends SURE, cannot tell whether UNSURE went out; records every recipient it was given."""

    def __init__(self, resends_are_safe: bool) -> None:
        self.resends_are_safe = resends_are_safe
        self.given: list[str] = []

    async def send(self, batches: Sequence[OutboundBatch]) -> list[list[Delivery]]:
        answers = []
        for batch in batches:
            self.given.extend(batch.recipients)
            answers.append(
                [
                    Delivery(DeliveryStatus.UNKNOWN, detail="no answer")
                    if r == UNSURE
                    else Delivery(DeliveryStatus.SENT, "p-1")
                    for r in batch.recipients
                ]
            )
        return answers

    async def account_state(self) -> ProviderState:
        return ProviderState.OK

    async def close(self) -> None:
        return None


def dispatcher(redis: Redis, provider: ScriptedProvider, resend_unknown: bool = False) -> JobDispatcher:
    return JobDispatcher(
        provider,
        TestTrafficProvider(),
        SendMarkers(redis, ttl_seconds=60),
        Blocklist(redis),
        RetryPolicy(3, (100,)),
        batch_size=10,
        resend_unknown=resend_unknown,
    )


async def test_unknown_is_held_where_resends_are_not_safe_and_never_sent_again(redis_url):
    redis = Redis.from_url(redis_url, decode_responses=True)
    provider = ScriptedProvider(resends_are_safe=False)
    job = make_job([SURE, UNSURE])
    try:
        result = await dispatcher(redis, provider).dispatch(job)
        assert result.retry is None and result.dead_letter is None
        assert result.held is not None and result.held.reason == "outcome_unknown"
        assert result.held.job is not None and result.held.job.recipients == [UNSURE]
        statuses = {o.recipient: o.status for o in result.event.outcomes}
        assert statuses == {SURE: "sent", UNSURE: "dead_lettered"}
        assert await redis.hget(marker_key(job.message_id), UNSURE) == "u:0"

        # The same attempt delivered again (the dispatcher died before its ack): held again.
        again = await dispatcher(redis, provider).dispatch(job, redelivered=True)
        assert again.held is not None and provider.given == [SURE, UNSURE]

        # The operator replays the dead letter: that is the decision to send it once more.
        replay = result.held.job.model_copy(update={"attempt": 1, "replay": 1})
        await dispatcher(redis, provider).dispatch(replay)
        assert provider.given == [SURE, UNSURE, UNSURE]
    finally:
        await redis.aclose()


async def test_unknown_is_retried_where_the_provider_deduplicates_or_the_operator_prefers_it(redis_url):
    redis = Redis.from_url(redis_url, decode_responses=True)
    try:
        for provider, resend_unknown in ((ScriptedProvider(True), False), (ScriptedProvider(False), True)):
            job = make_job([SURE, UNSURE])
            result = await dispatcher(redis, provider, resend_unknown).dispatch(job)
            assert result.held is None
            assert result.retry is not None and result.retry.recipients == [UNSURE]
            assert {o.recipient: o.status for o in result.event.outcomes} == {SURE: "sent", UNSURE: "retrying"}
            await dispatcher(redis, provider, resend_unknown).dispatch(result.retry)
            assert provider.given == [SURE, UNSURE, UNSURE]
    finally:
        await redis.aclose()


class RefusingProvider(ScriptedProvider):
    """Refuses the account, then (after the outage) sends everyone."""

    def __init__(self) -> None:
        super().__init__(resends_are_safe=False)
        self.refuse = True

    async def send(self, batches: Sequence[OutboundBatch]) -> list[list[Delivery]]:
        if self.refuse:
            raise ProviderAccountError(ProviderState.NO_CREDITS, "out of credits")
        self.given.extend(r for b in batches for r in b.recipients)
        return [[Delivery(DeliveryStatus.SENT, "p-1") for _ in b.recipients] for b in batches]


async def test_an_account_refusal_sent_nothing_so_the_job_handed_back_is_sent_not_held(redis_url):
    redis = Redis.from_url(redis_url, decode_responses=True)
    provider = RefusingProvider()
    job = make_job([SURE, UNSURE])
    try:
        with pytest.raises(ProviderAccountError):
            await dispatcher(redis, provider).dispatch(job)
        provider.refuse = False
        result = await dispatcher(redis, provider).dispatch(job, redelivered=True)
        assert result.held is None and provider.given == [SURE, UNSURE]
    finally:
        await redis.aclose()


class StallingProvider(ScriptedProvider):
    """Answers its first `answered` batches (sent); the next one it takes and never answers."""

    def __init__(self, answered: int) -> None:
        super().__init__(resends_are_safe=False)
        self.answered = answered
        self.stalled = asyncio.Event()

    async def send(self, batches: Sequence[OutboundBatch]) -> list[list[Delivery]]:
        if self.answered == 0:
            self.given.extend(r for b in batches for r in b.recipients)
            self.stalled.set()
            await asyncio.Event().wait()
        self.answered -= 1
        return await super().send(batches)


async def crash_mid_job(redis: Redis, job_recipients: int, answered: int) -> tuple[SmsJob, StallingProvider]:
    """Dispatches a job until the provider stalls, then stops it dead, as kill -9 would."""
    provider = StallingProvider(answered)
    job = make_job(numbers(job_recipients, start=100))
    crashed = asyncio.create_task(dispatcher(redis, provider).dispatch(job))
    await provider.stalled.wait()
    crashed.cancel()
    with pytest.raises(asyncio.CancelledError):
        await crashed
    return job, provider


async def test_a_crash_mid_job_leaves_only_the_batch_in_flight_unknown(redis_url):
    redis = Redis.from_url(redis_url, decode_responses=True)
    try:
        # The dispatcher started (and the marker generation began) before the job was accepted.
        await SendMarkers(redis, ttl_seconds=60).begin_generation()
        job, first = await crash_mid_job(redis, 50, answered=2)
        stored = await redis.hgetall(marker_key(job.message_id))
        # Batches of 10, claimed one at a time: two recorded, one in flight, two never claimed.
        assert {r for r, m in stored.items() if m == "p"} == set(job.recipients[20:30]) == set(first.given[20:])
        assert set(stored) == set(job.recipients[:30])

        # The redelivery holds the batch that may have reached the provider and sends the
        # never-claimed ones: nobody twice, nobody held who was never given to it.
        second = StallingProvider(answered=100)
        result = await dispatcher(redis, second).dispatch(job, redelivered=True)
        assert result.held is not None and result.held.job is not None
        assert result.held.job.recipients == job.recipients[20:30]
        assert second.given == job.recipients[30:]
        statuses = {o.recipient: o.status for o in result.event.outcomes}
        assert [statuses[r] for r in job.recipients] == ["sent"] * 20 + ["dead_lettered"] * 10 + ["sent"] * 20
    finally:
        await redis.aclose()


async def test_after_redis_lost_its_markers_a_recipient_without_one_is_unknown_not_sent(redis_url):
    redis = Redis.from_url(redis_url, decode_responses=True)
    try:
        await SendMarkers(redis, ttl_seconds=60).begin_generation()
        job, _ = await crash_mid_job(redis, 50, answered=2)
        # Redis comes back without its data: a new generation, no markers. Sent, in flight
        # and never claimed now look the same, so none of them is sent blindly.
        await asyncio.sleep(0.01)  # the new generation begins after the job was accepted
        await redis.delete(GENERATION_KEY, marker_key(job.message_id))
        second = StallingProvider(answered=100)
        result = await dispatcher(redis, second).dispatch(job, redelivered=True)
        assert second.given == []
        assert result.held is not None and result.held.job is not None
        assert result.held.job.recipients == job.recipients
    finally:
        await redis.aclose()


async def test_only_a_job_with_nothing_left_to_do_has_its_markers_kept_the_shorter_settled_ttl(redis_url):
    # A job whose recipients are held waits for an operator's replay (and one with a retry
    # for its delay): their markers keep the full TTL; a job that is done keeps the settled one.
    redis = Redis.from_url(redis_url, decode_responses=True)
    markers = SendMarkers(redis, ttl_seconds=7 * 86_400, settled_ttl_seconds=600)
    work = JobDispatcher(
        ScriptedProvider(resends_are_safe=False),
        TestTrafficProvider(),
        markers,
        Blocklist(redis),
        RetryPolicy(3, (100,)),
        batch_size=10,
    )
    done, held = make_job([SURE]), make_job([SURE, UNSURE])
    try:
        results = [(job, await work.dispatch(job)) for job in (done, held)]
        assert results[1][1].held is not None
        work.settled(results)
        await markers.claim(make_job([SURE]).message_id, [SURE])  # a call they ride along with
        assert 0 < await redis.ttl(marker_key(done.message_id)) <= 600
        assert await redis.ttl(marker_key(held.message_id)) > 86_400
    finally:
        await markers.close()
        await redis.delete(marker_key(done.message_id), marker_key(held.message_id))
        await redis.aclose()


class AnsweredLater(ScriptedProvider):
    """Takes each submit at once, answers SENT when the test says so."""

    def __init__(self) -> None:
        super().__init__(resends_are_safe=False)
        self.answer = asyncio.Event()
        self.submitted = asyncio.Event()

    async def send(self, batches: Sequence[OutboundBatch]) -> list[list[Delivery]]:
        for batch in batches:
            self.given.extend(batch.recipients)
        self.submitted.set()
        await self.answer.wait()
        return [[Delivery(DeliveryStatus.SENT, "p-1") for _ in batch.recipients] for batch in batches]


async def test_a_redelivery_while_this_dispatcher_still_sends_the_job_waits_for_its_outcome_not_holds(redis_url):
    """After a broker restart the job comes back while its first delivery is still at the
    SMSC in this dispatcher (claimed "p", answer not recorded): the redelivery waits for
    the first one's record and publishes the recipient as sent, neither held nor resent."""
    redis = Redis.from_url(redis_url, decode_responses=True)
    provider = AnsweredLater()
    one = dispatcher(redis, provider)
    job = make_job([SURE])
    try:
        first = asyncio.create_task(one.dispatch(job))
        await provider.submitted.wait()
        again = asyncio.create_task(one.dispatch(job, redelivered=True))
        await asyncio.sleep(0.2)
        assert not again.done(), "waits for the first delivery"
        provider.answer.set()
        results = [await first, await again]
        assert provider.given == [SURE], "sent once"
        for result in results:
            assert result.held is None
            assert [(o.status, o.provider_reference) for o in result.event.outcomes] == [("sent", "p-1")]
        assert one._sending == {}, "nothing left behind"
    finally:
        await redis.aclose()
