"""Rate limits in Redis: requests per minute per key and per tag, concurrent requests per key.

One Lua script decides and records a request atomically, so any number of ingest
processes share the limits without races. The minute limits are sliding logs (a sorted
set of request times, at most `limit` entries): "100 per minute" means at most 100 in any
60 seconds, with no burst at a window boundary. A concurrency slot is a member of a
sorted set scored by its expiry, so a slot a crashed process never released stops
counting after `slot_seconds`. Time comes from Redis, so processes on several hosts agree.

The X-RateLimit-* headers describe the per-key limit, as the contract shows them, except
on a refusal by the per-tag limit, where they describe the tag's window.
"""

from __future__ import annotations

import asyncio
import math
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from enum import IntEnum
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.client import Pipeline
from redis.exceptions import NoScriptError

WINDOW_MS = 60_000

_SCRIPT = """
local now_parts = redis.call('TIME')
local now = tonumber(now_parts[1]) * 1000 + math.floor(tonumber(now_parts[2]) / 1000)
local window = tonumber(ARGV[1])
local key_limit = tonumber(ARGV[2])
local tag_limit = tonumber(ARGV[3])
local concurrency_limit = tonumber(ARGV[4])
local slot = ARGV[5]
local slot_ms = tonumber(ARGV[6])
local admit = ARGV[7] == '1'

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

if not admit then return {0, key_limit, key_limit - key_count, key_reset, 0, now} end
if key_count >= key_limit then
  return {1, key_limit, 0, key_reset, key_reset - now, now}
end
if tag_limit > 0 and tag_count >= tag_limit then
  return {2, tag_limit, 0, tag_reset, tag_reset - now, now}
end
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now)
if redis.call('ZCARD', KEYS[3]) >= concurrency_limit then
  return {3, key_limit, key_limit - key_count, key_reset, 1000, now}
end

redis.call('ZADD', KEYS[1], now, slot)
redis.call('PEXPIRE', KEYS[1], window)
if tag_limit > 0 then
  redis.call('ZADD', KEYS[2], now, slot)
  redis.call('PEXPIRE', KEYS[2], window)
end
redis.call('ZADD', KEYS[3], now + slot_ms, slot)
redis.call('PEXPIRE', KEYS[3], slot_ms)
return {0, key_limit, key_limit - key_count - 1, key_reset, 0, now}
"""


class Verdict(IntEnum):
    ADMITTED = 0
    KEY_LIMIT = 1
    TAG_LIMIT = 2
    CONCURRENCY_LIMIT = 3


@dataclass(frozen=True, slots=True)
class Limits:
    requests_per_minute: int
    tag_requests_per_minute: int
    concurrent_requests: int


@dataclass(frozen=True, slots=True)
class RateDecision:
    verdict: Verdict
    limit: int
    remaining: int
    reset_epoch: int
    """When the reported window frees its oldest request, in Unix seconds."""
    retry_after: int
    """Seconds until a rejected request may succeed; 0 when admitted."""
    slot: str

    @property
    def admitted(self) -> bool:
        return self.verdict is Verdict.ADMITTED

    def headers(self) -> dict[str, str]:
        return {
            "X-RateLimit-Limit": str(self.limit),
            "X-RateLimit-Remaining": str(max(0, self.remaining)),
            "X-RateLimit-Reset": str(self.reset_epoch),
        }

    @classmethod
    def untracked(cls, limit: int) -> RateDecision:
        """Headers for a request no key's limits were counted for (no valid key, Redis down)."""
        now = time.time()
        return cls(Verdict.ADMITTED, limit, limit, math.ceil(now) + WINDOW_MS // 1000, 0, "")


class RateLimiter:
    def __init__(self, redis: Redis, *, slot_seconds: int, prefix: str = "rsms:rl") -> None:
        self._redis = redis
        self._sha = redis.register_script(_SCRIPT).sha
        self._releases: list[tuple[str, str, asyncio.Future[None]]] = []
        self._releaser: asyncio.Task[None] | None = None
        self._slot_ms = slot_seconds * 1000
        self._prefix = prefix

    async def round_trip(self, fill: Callable[[Pipeline], str]) -> tuple[str, list[Any]]:
        """Run the pipeline `fill` queues (a decision and other commands) in one round trip;
        returns what `fill` returned (the slot) and the pipeline's results.

        The script goes as a bare EVALSHA: redis-py's `Script` would send SCRIPT EXISTS before
        every pipeline, a second round trip per request. If Redis has lost the script (first
        use, restart, SCRIPT FLUSH) the script did not run, so the script is loaded and the
        pipeline sent once more; `fill` must therefore queue nothing but reads besides it.
        """
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                slot = fill(pipe)
                return slot, await pipe.execute()
        except NoScriptError:
            await self._redis.script_load(_SCRIPT)
        async with self._redis.pipeline(transaction=False) as pipe:
            slot = fill(pipe)
            return slot, await pipe.execute()

    def acquire(self, pipe: Pipeline, key_id: str, tag: str | None, limits: Limits) -> str:
        """Queue the decision on `pipe`, so it shares a round trip with the other checks of
        the request; read it back with `decision(result, slot)` using the returned slot.

        `tag` is the project-qualified tag, or None when the request names no valid tag.
        """
        return self._queue(pipe, key_id, tag, limits, admit=True)

    def peek(self, pipe: Pipeline, key_id: str, limits: Limits) -> str:
        """Queue a look at the key's usage that records nothing (for headers on early errors)."""
        return self._queue(pipe, key_id, None, limits, admit=False)

    def _queue(self, pipe: Pipeline, key_id: str, tag: str | None, limits: Limits, *, admit: bool) -> str:
        slot = uuid.uuid4().hex
        keys = [
            f"{self._prefix}:key:{key_id}",
            f"{self._prefix}:tag:{tag or ''}",
            f"{self._prefix}:conc:{key_id}",
        ]
        args: list[int | str] = [
            WINDOW_MS,
            limits.requests_per_minute,
            limits.tag_requests_per_minute if tag else 0,
            limits.concurrent_requests,
            slot,
            self._slot_ms,
            1 if admit else 0,
        ]
        pipe.evalsha(self._sha, len(keys), *keys, *args)
        return slot

    @staticmethod
    def decision(result: list[int], slot: str) -> RateDecision:
        verdict, limit, remaining, reset_ms, retry_ms, _now = (int(v) for v in result)
        return RateDecision(
            verdict=Verdict(verdict),
            limit=limit,
            remaining=remaining,
            reset_epoch=math.ceil(reset_ms / 1000),
            retry_after=max(1, math.ceil(retry_ms / 1000)) if verdict else 0,
            slot=slot if verdict == Verdict.ADMITTED else "",
        )

    async def release(self, key_id: str, slot: str) -> None:
        """Give the slot back; returns once Redis has removed it (or raises why not).

        Group commit: releases that arrive while others are on their way to Redis go
        together in the next round trip. Alone, a release goes at once; under load one
        round trip carries many, where one each cost the hot path ~5% of its CPU.
        """
        if not slot:
            return
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._releases.append((f"{self._prefix}:conc:{key_id}", slot, done))
        if self._releaser is None or self._releaser.done():
            # A task, not the first caller: a cancelled caller must not strand the others.
            self._releaser = asyncio.create_task(self._release_batches())
        await done

    async def _release_batches(self) -> None:
        while self._releases:
            batch, self._releases = self._releases, []
            outcome: BaseException | None = None
            try:
                async with self._redis.pipeline(transaction=False) as pipe:
                    for key, slot, _ in batch:
                        pipe.zrem(key, slot)
                    await pipe.execute()
            except Exception as exc:  # every waiter gets the error its own ZREM would have raised
                outcome = exc
            for _, _, done in batch:
                if done.done():
                    continue  # its request was cancelled meanwhile
                if outcome is None:
                    done.set_result(None)
                else:
                    done.set_exception(outcome)
