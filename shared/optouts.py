"""Per-project opt-out lists: the numbers that asked a project (by replying STOP) to send
them nothing more. A Redis set per project under `opt_out_key(project)`.

The dispatcher adds a sender that texts an opt-out keyword to one of the project's inbound
numbers and removes one that texts START; ingest refuses a send from that project to a
number on its list with `RECIPIENT_BLOCKED` (the same answer as the global blocklist, so a
project cannot tell the two apart); operators manage the lists with `rsms optouts`. Other
projects' sends to the number are unaffected.
"""

from __future__ import annotations

from collections.abc import Iterable

from shared.redis_connection import RedisClient

OPT_OUT_KEY_PREFIX = "rsms:optout:"


def opt_out_key(project: str) -> str:
    return f"{OPT_OUT_KEY_PREFIX}{project}"


class OptOuts:
    """Adding and removing are set operations: applying the same keyword twice (a carrier
    sending a message again) leaves the list as once."""

    def __init__(self, redis: RedisClient) -> None:
        self._redis = redis

    async def add(self, project: str, numbers: Iterable[str]) -> int:
        members = list(numbers)
        return int(await self._redis.sadd(opt_out_key(project), *members)) if members else 0

    async def remove(self, project: str, numbers: Iterable[str]) -> int:
        members = list(numbers)
        return int(await self._redis.srem(opt_out_key(project), *members)) if members else 0

    async def members(self, project: str) -> list[str]:
        raw = await self._redis.smembers(opt_out_key(project))
        return sorted(m.decode() if isinstance(m, bytes) else m for m in raw)
