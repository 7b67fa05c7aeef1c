"""Whether the Redis the services share keeps its data across a restart.

Idempotency-Keys (the contract's 24-hour promise), the blocklist and the dispatcher's
send markers live in Redis. A Redis without persistence comes back empty after a
restart: a client's retry then becomes a second message. The services do not refuse to
run on one (a developer's throwaway Redis is fine), but they say so loudly: a WARNING at
start and a detail in `/health/ready`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.exceptions import RedisError, ResponseError

from shared.log import get_logger
from shared.redis_connection import RedisClient

log = get_logger(__name__)

ADVICE = "run Redis with --appendonly yes (see the README: RedisClient must persist)"


@dataclass(frozen=True, slots=True)
class RedisPersistence:
    persists: bool
    detail: str


def persistence_from(info: Mapping[str, Any], save_policy: str | None) -> RedisPersistence:
    """From `INFO persistence` and `CONFIG GET save` (None where CONFIG is refused)."""
    if str(info.get("aof_enabled", "0")) == "1":
        return RedisPersistence(True, "AOF enabled")
    if save_policy:
        return RedisPersistence(
            True, f"RDB snapshots only (save {save_policy}): a crash loses the writes since the last one; {ADVICE}"
        )
    if save_policy is None:
        return RedisPersistence(False, f"AOF off and the snapshot policy unreadable (CONFIG refused); {ADVICE}")
    return RedisPersistence(
        False, f"no persistence: a restart empties Redis, and retries become second sends; {ADVICE}"
    )


async def check_persistence(redis: RedisClient) -> RedisPersistence | None:
    """What the Redis keeps over a restart; None while it does not answer (in 2 s)."""
    try:
        async with asyncio.timeout(2):
            return await _ask(redis)
    except (RedisError, OSError, TimeoutError):
        return None


async def _ask(redis: RedisClient) -> RedisPersistence:
    if isinstance(redis, RedisCluster):
        # Every master holds some of the keys: the cluster keeps what its weakest keeps.
        await redis.initialize()  # the client learns the masters at its first command
        found = [await _ask_node(redis, node) for node in redis.get_primaries()]
        return min(found, key=lambda f: (f.persists, "AOF" in f.detail))
    return await _ask_node(redis, None)


async def _ask_node(redis: RedisClient, node: ClusterNode | None) -> RedisPersistence:
    on_node: dict[str, Any] = {} if node is None else {"target_nodes": node}
    info = await redis.info("persistence", **on_node)
    save: str | None
    try:
        value = (await redis.config_get("save", **on_node)).get("save", "")
        save = value.decode() if isinstance(value, bytes) else str(value)
    except ResponseError:  # CONFIG disabled, as managed Redis services do
        save = None
    return persistence_from(info, save)


def readiness_detail(found: RedisPersistence | None) -> str:
    if found is None:
        return "unknown: RedisClient does not answer"
    return ("persists: " if found.persists else "DOES NOT PERSIST: ") + found.detail


async def warn_unless_persistent(redis: RedisClient, service: str) -> RedisPersistence | None:
    """Checks at start; logs a WARNING when Redis would lose the gateway's promises."""
    found = await check_persistence(redis)
    if found is not None and not found.persists:
        log.warning("Redis does not persist its data", service=service, detail=found.detail)
    elif found is not None and "RDB" in found.detail:
        log.warning("Redis persists only by snapshots", service=service, detail=found.detail)
    return found
