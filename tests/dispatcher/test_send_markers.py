"""Send markers: the rule that decides a recipient's fate, and the claim script that applies
it atomically in a real Redis, including one that lost its data."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from redis.asyncio import Redis

from services.dispatcher.send_markers import (
    GENERATION_KEY,
    MarkerVerdict,
    SendMarkers,
    marker_key,
    markers_may_be_lost,
    verdict,
)

SEND, UNKNOWN, SETTLED = MarkerVerdict.SEND, MarkerVerdict.UNKNOWN, MarkerVerdict.SETTLED


@pytest.mark.parametrize(
    ("marker", "replay", "lost", "expected"),
    [
        ("", 0, False, SEND),  # never claimed
        ("", 0, True, UNKNOWN),  # its marker may be one Redis lost
        ("t", 0, True, SEND),  # the provider said it did not send it
        ("p", 0, False, UNKNOWN),  # claimed, never recorded: a crash mid-send
        ("s:sim-1", 0, False, SETTLED),
        ("b", 0, False, SETTLED),
        ("i", 0, False, SETTLED),
        ("u:0", 0, False, SETTLED),  # held for an operator: a redelivery holds it again
        ("u:0", 1, False, SEND),  # the operator replayed it
        ("u:1", 1, False, SETTLED),  # held again by that replay
    ],
)
def test_verdict_per_marker(marker, replay, lost, expected):
    assert verdict(marker, replay, markers_may_be_lost=lost) is expected


def test_only_a_job_worked_on_before_the_generation_began_may_have_lost_markers():
    accepted = datetime(2026, 1, 1, tzinfo=UTC)
    before = int((accepted + timedelta(seconds=5)).timestamp() * 1000)  # generation began after acceptance
    after = int((accepted - timedelta(seconds=5)).timestamp() * 1000)
    # A first delivery was never handed to any dispatcher: nothing of it can have been sent.
    assert not markers_may_be_lost(accepted, 1, False, before)
    assert markers_may_be_lost(accepted, 1, True, before)  # redelivered
    assert markers_may_be_lost(accepted, 2, False, before)  # a retry: attempt 1 sent some
    assert not markers_may_be_lost(accepted, 2, True, after)  # all its markers are in this Redis


async def test_claim_script_claims_what_may_be_sent_and_keeps_the_rest(redis_url):
    redis = Redis.from_url(redis_url)
    markers = SendMarkers(redis, ttl_seconds=60)
    message_id = uuid.uuid4()
    try:
        first = await markers.claim(message_id, ["+4790000001", "+4790000002"])
        assert first.markers == ["", ""]
        await markers.record(message_id, {"+4790000001": "s:sim-1", "+4790000002": "u:0"})
        again = await markers.claim(message_id, ["+4790000001", "+4790000002"], replay=0)
        assert again.markers == ["s:sim-1", "u:0"]
        assert again.generation_since_ms == first.generation_since_ms
        # A replay releases the held recipient: the claim takes it (and only once).
        replayed = await markers.claim(message_id, ["+4790000002"], replay=1)
        assert replayed.markers == ["u:0"]
        assert (await markers.claim(message_id, ["+4790000002"], replay=1)).markers == ["p"]
        # A transient failure is claimed again for the retry.
        await markers.record(message_id, {"+4790000002": "t"})
        assert (await markers.claim(message_id, ["+4790000002"])).markers == ["t"]
        assert (await markers.claim(message_id, ["+4790000002"])).markers == ["p"]
    finally:
        await redis.aclose()


async def test_an_emptied_redis_starts_a_new_generation(redis_url):
    redis = Redis.from_url(redis_url)
    markers = SendMarkers(redis, ttl_seconds=60)
    try:
        first = await markers.claim(uuid.uuid4(), ["+4790000001"])
        assert await redis.exists(GENERATION_KEY)
        await redis.flushdb()  # as a restart without persistence leaves it
        second = await markers.claim(uuid.uuid4(), ["+4790000001"])
        assert second.generation_since_ms >= first.generation_since_ms
        assert await redis.exists(GENERATION_KEY)
        # Another server (a restart: a new run id) is a new generation too.
        await redis.hset(GENERATION_KEY, mapping={"run_id": "0" * 40, "since": 1})
        third = await markers.claim(uuid.uuid4(), ["+4790000001"])
        assert third.generation_since_ms > 1
    finally:
        await redis.aclose()


async def test_a_dispatcher_begins_the_generation_before_any_claim(redis_url):
    redis = Redis.from_url(redis_url)
    markers = SendMarkers(redis, ttl_seconds=60)
    try:
        await redis.delete(GENERATION_KEY)
        since = await markers.begin_generation()
        # Begun once: a later start and a claim answer the same generation.
        assert await markers.begin_generation() == since
        assert (await markers.claim(uuid.uuid4(), ["+4790000001"])).generation_since_ms == since
        await redis.delete(GENERATION_KEY)  # Redis back without its data
        assert await markers.begin_generation() >= since
    finally:
        await redis.aclose()


async def test_an_unknown_outcome_is_settled_only_where_its_claim_still_stands(redis_url):
    # Two dispatchers on one job: the second saw the first's claim ("p") and holds the
    # recipient as unknown, while the first records it as sent. The hold must not win.
    redis = Redis.from_url(redis_url)
    markers = SendMarkers(redis, ttl_seconds=60)
    message_id = uuid.uuid4()
    sent, in_flight = "+4790000001", "+4790000002"
    try:
        await markers.claim(message_id, [sent, in_flight])
        await markers.record(message_id, {sent: "s:sim-1"})
        await markers.settle_unknown(message_id, {sent: "u:0", in_flight: "u:0"})
        again = await markers.claim(message_id, [sent, in_flight], replay=1)
        assert again.markers == ["s:sim-1", "u:0"]
    finally:
        await redis.aclose()


async def test_a_settled_job_keeps_its_markers_the_settled_ttl_and_a_claim_puts_the_full_one_back(redis_url):
    redis = Redis.from_url(redis_url)
    markers = SendMarkers(redis, ttl_seconds=7 * 86_400, settled_ttl_seconds=3_600)
    done, other = uuid.uuid4(), uuid.uuid4()
    try:
        for message_id in (done, other):
            await markers.claim(message_id, ["+4790000001"])
            await markers.record(message_id, {"+4790000001": "s:sim-1"})
        markers.settled([done])
        await markers.record(other, {"+4790000002": "s:sim-2"})  # the settled key rides along
        assert 3_500 < await redis.ttl(marker_key(done)) <= 3_600
        assert await redis.ttl(marker_key(other)) > 86_400  # not settled: the full TTL
        assert await redis.hget(marker_key(done), "+4790000001") == b"s:sim-1"  # only its TTL changed
        # A duplicate delivery claims again: the markers are needed for the full time again.
        assert (await markers.claim(done, ["+4790000001"])).markers == ["s:sim-1"]
        assert await redis.ttl(marker_key(done)) > 86_400
    finally:
        await markers.close()
        await redis.delete(marker_key(done), marker_key(other))
        await redis.aclose()


async def test_settled_keys_go_on_their_own_when_no_claim_or_record_comes(redis_url, monkeypatch):
    monkeypatch.setattr("services.dispatcher.send_markers._SETTLE_DELAY_SECONDS", 0.05)
    redis = Redis.from_url(redis_url)
    markers = SendMarkers(redis, ttl_seconds=7 * 86_400, settled_ttl_seconds=3_600)
    done = uuid.uuid4()
    try:
        await markers.claim(done, ["+4790000001"])
        markers.settled([done])
        for _ in range(100):
            if await redis.ttl(marker_key(done)) <= 3_600:
                break
            await asyncio.sleep(0.02)
        assert 3_500 < await redis.ttl(marker_key(done)) <= 3_600
        assert await redis.hget(marker_key(done), "+4790000001") == b"p"  # only its TTL changed
        assert await redis.exists(GENERATION_KEY)  # and not the generation's
        assert await redis.ttl(GENERATION_KEY) == -1
    finally:
        await markers.close()
        await redis.delete(marker_key(done))
        await redis.aclose()


async def test_closing_sends_the_settled_keys_still_waiting(redis_url):
    redis = Redis.from_url(redis_url)
    markers = SendMarkers(redis, ttl_seconds=7 * 86_400, settled_ttl_seconds=3_600)
    done = uuid.uuid4()
    try:
        await markers.claim(done, ["+4790000001"])
        markers.settled([done])
        await markers.close()  # a dispatcher stopping: no later call to ride along with
        assert 3_500 < await redis.ttl(marker_key(done)) <= 3_600
    finally:
        await redis.delete(marker_key(done))
        await redis.aclose()
