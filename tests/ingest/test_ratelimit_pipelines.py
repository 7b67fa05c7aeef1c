"""The rate limiter sends the admissions and releases of one event-loop turn in one
pipeline: each request must still get its own answer, and one request's Redis error must
stay its own."""

from __future__ import annotations

import asyncio

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError

from services.ingest.ratelimit import (
    AdmissionQuery,
    Limits,
    RateLimiter,
    Verdict,
    concurrency_key,
    found_among,
    script_numbers,
    shared_numbers,
)
from shared.blocklist import BLOCKLIST_KEY
from shared.optouts import opt_out_key
from shared.redis_connection import connect

LIMITS = Limits(requests_per_minute=100, tag_requests_per_minute=100, concurrent_requests=5, reads_per_minute=100)


async def test_requests_admitted_together_get_their_own_answers(redis_url: str) -> None:
    client = connect(redis_url)
    limiter = RateLimiter(client, slot_seconds=30)
    await client.sadd(BLOCKLIST_KEY, "+4712345601")
    await client.sadd(opt_out_key("acme"), "+4712345602")
    try:
        queries = [
            AdmissionQuery("key_1", LIMITS, tag="acme:T", recipients=[f"+47123456{i:02d}"], project="acme")
            for i in range(12)
        ]
        answers = await asyncio.gather(*(limiter.admit(q) for q in queries))

        verdicts = [a.rate.verdict for a in answers]
        assert verdicts.count(Verdict.ADMITTED) == 5
        assert verdicts.count(Verdict.CONCURRENCY_LIMIT) == 7
        admitted = [a for a in answers if a.rate.admitted]
        assert len({a.reservation.slot for a in admitted}) == 5
        assert all(a.reservation.slot == "" for a in answers if not a.rate.admitted)
        # Each request's lookups are its own recipients'.
        assert [sorted(a.blocked) for a in answers[:4]] == [[], ["+4712345601"], ["+4712345602"], []]

        await asyncio.gather(*(limiter.release(a.reservation) for a in admitted))
        again = await asyncio.gather(*(limiter.admit(q) for q in queries[:5]))
        assert all(a.rate.admitted for a in again)
        # The send window counted only the admitted requests: 5 + 5 of 100.
        assert min(a.rate.remaining for a in again) == 100 - 10
    finally:
        await client.aclose()


async def test_one_requests_redis_error_is_its_own(redis_url: str) -> None:
    client = connect(redis_url)
    limiter = RateLimiter(client, slot_seconds=30)
    # A key of the wrong type makes this project's opt-out lookup fail in Redis.
    await client.set(opt_out_key("broken"), "not a set")
    try:
        ok, broken, peeked = await asyncio.gather(
            limiter.admit(AdmissionQuery("key_1", LIMITS, tag="acme:T", recipients=["+4712345678"], project="acme")),
            limiter.admit(
                AdmissionQuery("key_2", LIMITS, tag="broken:T", recipients=["+4712345678"], project="broken")
            ),
            limiter.peek("acme", "key_1", LIMITS),
            return_exceptions=True,
        )
        assert not isinstance(ok, BaseException) and ok.rate.admitted
        assert isinstance(broken, ResponseError) and "WRONGTYPE" in str(broken)
        assert not isinstance(peeked, BaseException) and peeked.remaining == 99
    finally:
        await client.aclose()


async def test_a_lost_connection_reaches_every_waiter_as_a_redis_error() -> None:
    # Nobody listens on port 1: the whole pipeline fails, and so does every request in it.
    limiter = RateLimiter(connect("redis://127.0.0.1:1/0"), slot_seconds=30)
    results = await asyncio.gather(
        *(limiter.admit(AdmissionQuery(f"key_{i}", LIMITS, project="acme")) for i in range(3)),
        return_exceptions=True,
    )
    assert all(isinstance(r, RedisConnectionError) for r in results), results
    with pytest.raises(RedisConnectionError):
        await limiter.admit(AdmissionQuery("key_1", LIMITS, project="acme"))


def test_shared_numbers_names_each_number_once_in_order() -> None:
    assert shared_numbers([["+4711", "+4712"], ["+4712", "+4713"], []]) == "+4711,+4712,+4713"
    assert shared_numbers([]) == ""


def test_found_among_splits_a_shared_lookup_back_per_request() -> None:
    found = [b"+4712", b"+4799"]
    assert found_among(["+4711", "+4712"], found) == {"+4712"}
    assert found_among(["+4711"], found) == frozenset()
    assert found_among(["+4711"], []) == frozenset()


async def test_lookups_shared_by_a_pipeline_answer_each_project_its_own_opt_outs(redis_url: str) -> None:
    client = connect(redis_url)
    limiter = RateLimiter(client, slot_seconds=30)
    await client.sadd(BLOCKLIST_KEY, "+4712345601")
    await client.sadd(opt_out_key("acme"), "+4712345602")
    await client.sadd(opt_out_key("other"), "+4712345603")
    try:
        numbers = ["+4712345601", "+4712345602", "+4712345603"]
        answers = await asyncio.gather(
            limiter.admit(AdmissionQuery("key_1", LIMITS, tag="acme:T", recipients=numbers, project="acme")),
            limiter.admit(AdmissionQuery("key_2", LIMITS, tag="other:T", recipients=numbers, project="other")),
            limiter.admit(AdmissionQuery("key_3", LIMITS, project="third")),
        )
        assert [sorted(a.blocked) for a in answers] == [
            ["+4712345601", "+4712345602"],
            ["+4712345601", "+4712345603"],
            [],
        ]
    finally:
        await client.aclose()


async def test_releases_of_one_pipeline_give_back_every_slot(redis_url: str) -> None:
    client = connect(redis_url)
    limiter = RateLimiter(client, slot_seconds=30)
    try:
        queries = [AdmissionQuery(f"key_{i % 2}", LIMITS, project="acme") for i in range(10)]
        admitted = await asyncio.gather(*(limiter.admit(q) for q in queries))
        assert all(a.rate.admitted for a in admitted)
        await asyncio.gather(*(limiter.release(a.reservation) for a in admitted))
        for key_id in ("key_0", "key_1"):
            assert await client.zcard(concurrency_key("rsms:rl", "acme", key_id)) == 0
    finally:
        await client.aclose()


async def test_lost_scripts_are_loaded_and_each_request_counted_once(redis_url: str) -> None:
    client = connect(redis_url)
    limiter = RateLimiter(client, slot_seconds=30)
    await client.sadd(BLOCKLIST_KEY, "+4712345601")
    try:
        await client.script_flush()
        queries = [
            AdmissionQuery("key_1", LIMITS, tag="acme:T", recipients=[f"+47123456{i:02d}"], project="acme")
            for i in range(3)
        ]
        answers = await asyncio.gather(*(limiter.admit(q) for q in queries))
        assert [sorted(a.blocked) for a in answers] == [[], ["+4712345601"], []]
        assert sorted(a.rate.remaining for a in answers) == [97, 98, 99]
    finally:
        await client.aclose()


def test_script_numbers_are_one_argument_the_script_splits_on_commas() -> None:
    assert script_numbers(60_000, 100, 0, 5, 30_000, 1, 0, 0, 172_800) == "60000,100,0,5,30000,1,0,0,172800"
