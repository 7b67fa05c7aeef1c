"""A recipient the provider answered UNKNOWN (a bind dropped mid-window, an answer that
never came): resent where the provider deduplicates, held for an operator where it cannot.

The dispatcher's own logic with real send markers (Redis); the provider is a scripted one,
as an SMPP adapter that lost its bind would answer (the end-to-end runs against the
simulator are in test_redis_data_loss.py).
"""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from redis.asyncio import Redis

from services.dispatcher.job_dispatcher import JobDispatcher
from services.dispatcher.provider import Delivery, DeliveryStatus, OutboundBatch, ProviderAccountError
from services.dispatcher.retry_policy import RetryPolicy
from services.dispatcher.send_markers import SendMarkers, marker_key
from services.dispatcher.test_traffic_provider import TestTrafficProvider
from shared.blocklist import Blocklist
from shared.provider_state import ProviderState
from tests.dispatcher.harness import make_job

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
