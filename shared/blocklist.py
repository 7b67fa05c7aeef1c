"""The recipient blocklist: a Redis set of E.164 numbers that are never sent to.

Ingest refuses a send to any of them (`RECIPIENT_BLOCKED`, checked inside its rate-limit
script under `BLOCKLIST_KEY`); the dispatcher adds numbers the provider reports as
blocked; operators manage it with `rsms blocklist`.
"""

from __future__ import annotations

from collections.abc import Iterable

from shared.redis_connection import RedisClient

BLOCKLIST_KEY = "rsms:blocklist"


class Blocklist:
    def __init__(self, redis: RedisClient) -> None:
        self._redis = redis

    async def add(self, numbers: Iterable[str]) -> int:
        members = list(numbers)
        return int(await self._redis.sadd(BLOCKLIST_KEY, *members)) if members else 0

    async def remove(self, numbers: Iterable[str]) -> int:
        members = list(numbers)
        return int(await self._redis.srem(BLOCKLIST_KEY, *members)) if members else 0

    async def members(self) -> list[str]:
        raw = await self._redis.smembers(BLOCKLIST_KEY)
        return sorted(m.decode() if isinstance(m, bytes) else m for m in raw)
