"""The rate script decides a project's admissions of one pipeline in one call: every answer
must be what running each admission alone, one after the other, gave (the script until
round 7, kept below as the reference), and Redis must hold the same counts afterwards."""

from __future__ import annotations

import asyncio
import uuid
from decimal import Decimal

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.ingest.ratelimit import (
    SPEND_KEY_TTL_SECONDS,
    WINDOW_MS,
    AdmissionQuery,
    Limits,
    RateLimiter,
    SpendQuery,
    rate_keys,
    script_numbers,
    to_micros,
)
from shared.redis_connection import connect

SLOT_SECONDS = 30

# The rate script as it was until round 7: one admission a call. The reference for the
# batched script's answers, on purpose a second copy.
ONE_AT_A_TIME = """
local now_parts = redis.call('TIME')
local now = tonumber(now_parts[1]) * 1000 + math.floor(tonumber(now_parts[2]) / 1000)
local n = {}
for v in string.gmatch(ARGV[1], '[^,]+') do n[#n + 1] = tonumber(v) end
local window, key_limit, tag_limit, concurrency_limit = n[1], n[2], n[3], n[4]
local slot_ms, admit, cost, spend_cap, spend_ttl = n[5], n[6] == 1, n[7], n[8], n[9]
local slot = ARGV[2]
local day = math.floor(now / 86400000)

local function usage(key)
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now - window)
  local count = redis.call('ZCARD', key)
  local reset = now + window
  if count > 0 then
    reset = tonumber(redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')[2]) + window
  end
  return count, reset
end

local key_count, key_reset = usage(KEYS[1])
local tag_count, tag_reset = 0, now + window
if tag_limit > 0 then tag_count, tag_reset = usage(KEYS[2]) end

if not admit then return {0, key_limit, key_limit - key_count, key_reset, 0, now, 0, 0, day} end
if key_count >= key_limit then
  return {1, key_limit, 0, key_reset, key_reset - now, now, 0, 0, day}
end
if tag_limit > 0 and tag_count >= tag_limit then
  return {2, tag_limit, 0, tag_reset, tag_reset - now, now, 0, 0, day}
end
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now)
if redis.call('ZCARD', KEYS[3]) >= concurrency_limit then
  return {3, key_limit, key_limit - key_count, key_reset, 1000, now, 0, 0, day}
end

redis.call('ZADD', KEYS[1], now, slot)
redis.call('PEXPIRE', KEYS[1], window)
if tag_limit > 0 then
  redis.call('ZADD', KEYS[2], now, slot)
  redis.call('PEXPIRE', KEYS[2], window)
end
redis.call('ZADD', KEYS[3], now + slot_ms, slot)
redis.call('PEXPIRE', KEYS[3], slot_ms)

local spend_status, spent = 0, 0
if spend_cap > 0 then
  local spend_key = KEYS[4] .. ':' .. day
  spent = tonumber(redis.call('GET', spend_key) or '0')
  if spent + cost > spend_cap then
    spend_status = 2
  elseif cost > 0 then
    spent = redis.call('INCRBY', spend_key, cost)
    redis.call('EXPIRE', spend_key, spend_ttl)
    spend_status = 1
  end
end
return {0, key_limit, key_limit - key_count - 1, key_reset, 0, now, spend_status, spent, day}
"""

Admit = tuple[int, int, int, int, bool, int, int]
"""key id, tag (0: none), key limit, concurrency limit, count it, cost, spend cap (0: none)."""

admissions = st.lists(
    st.tuples(
        st.integers(0, 2),
        st.integers(0, 2),
        st.integers(1, 6),
        st.integers(1, 6),
        st.booleans(),
        st.integers(0, 300),
        st.sampled_from([0, 500, 1000]),
    ),
    min_size=1,
    max_size=25,
)


def query(project: str, admit: Admit) -> AdmissionQuery:
    key, tag, key_limit, conc, _, cost, cap = admit
    limits = Limits(
        requests_per_minute=key_limit, tag_requests_per_minute=key_limit + 1, concurrent_requests=conc,
        reads_per_minute=100,
    )  # fmt: skip
    return AdmissionQuery(
        key_id=f"key_{key}",
        limits=limits,
        tag=f"{project}:t{tag}" if tag else None,
        project=project,
        spend=SpendQuery(project, Decimal(cost) / 1_000_000, Decimal(cap) / 1_000_000) if cap else None,
    )


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(batch=admissions)
def test_a_batch_answers_as_one_request_at_a_time_did(redis_url: str, batch: list[Admit]) -> None:
    asyncio.run(compare(redis_url, batch))


async def compare(redis_url: str, batch: list[Admit]) -> None:
    client = connect(redis_url)
    try:
        limiter = RateLimiter(client, slot_seconds=SLOT_SECONDS, prefix="batched")
        project = f"p{uuid.uuid4().hex[:8]}"
        queries = [query(project, admit) for admit in batch]

        async def admit(q: AdmissionQuery, count: bool) -> list[int]:
            if count:
                answers = await limiter.admit(q)
                r = answers.rate
                return [
                    int(r.verdict),
                    r.limit,
                    r.remaining,
                    int(answers.spend.verdict),
                    to_micros(answers.spend.spent),
                ]
            r = await limiter.peek(q.project, q.key_id, q.limits)
            return [int(r.verdict), r.limit, r.remaining, 0, 0]

        # All handed in in one loop turn: one pipeline, one script call for the project.
        batched = await asyncio.gather(*(admit(q, a[4]) for q, a in zip(queries, batch, strict=True)))

        sha = await client.script_load(ONE_AT_A_TIME)
        alone = []
        for q, (_, _, _, _, count, cost, cap) in zip(queries, batch, strict=True):
            keys = rate_keys("alone", q.project, q.key_id, q.tag, read=False)
            limits = q.limits
            numbers = script_numbers(
                WINDOW_MS, limits.requests_per_minute, limits.tag_requests_per_minute if q.tag else 0,
                limits.concurrent_requests, SLOT_SECONDS * 1000, 1 if count else 0, cost if count else 0,
                cap if count else 0, SPEND_KEY_TTL_SECONDS,
            )  # fmt: skip
            reply = [int(v) for v in await client.evalsha(sha, len(keys), *keys, numbers, uuid.uuid4().hex)]
            verdict, limit, remaining = reply[:3]
            spend_status, spent = (reply[6], reply[7]) if count and verdict == 0 else (0, 0)
            alone.append([verdict, limit, max(0, remaining), spend_status, spent])
        assert [[v, lim, max(0, rem), s, sp] for v, lim, rem, s, sp in batched] == alone

        # The same counts left in Redis: windows, concurrency slots, the day's spend.
        for name in ("key_0", "key_1", "key_2", f"tag:{project}:t1", f"tag:{project}:t2", "conc:key_0", "conc:key_1"):
            kind = name.partition(":")[0]
            batched_key = f"batched:{{{project}}}:{name if kind in ('tag', 'conc') else 'key:' + name}"
            alone_key = batched_key.replace("batched:", "alone:", 1)
            assert await client.zcard(batched_key) == await client.zcard(alone_key), name
        spent_batched = await client.keys(f"batched:{{{project}}}:spend:*")
        spent_alone = await client.keys(f"alone:{{{project}}}:spend:*")
        assert [await client.get(k) for k in spent_batched] == [await client.get(k) for k in spent_alone]
    finally:
        await client.aclose()
