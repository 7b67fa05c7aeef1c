"""Whether Redis keeps the gateway's promises over a restart, read from the server itself."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from redis.asyncio import Redis
from structlog.testing import capture_logs

from shared.redis_persistence import check_persistence, persistence_from, warn_unless_persistent
from tests.support.redis_server import RedisServer


def test_aof_or_a_snapshot_policy_persists_nothing_else_does():
    assert persistence_from({"aof_enabled": 1}, "").persists
    snapshots = persistence_from({"aof_enabled": 0}, "3600 1 300 100")
    assert snapshots.persists and "RDB" in snapshots.detail
    assert not persistence_from({"aof_enabled": 0}, "").persists
    assert not persistence_from({"aof_enabled": 0}, None).persists  # CONFIG refused: cannot tell


async def test_a_redis_without_persistence_is_reported_loudly(redis_url):
    redis = Redis.from_url(redis_url)  # the tests' own server: --save "" --appendonly no
    try:
        with capture_logs() as logs:
            found = await warn_unless_persistent(redis, "test")
    finally:
        await redis.aclose()
    assert found is not None and not found.persists
    assert [(e["log_level"], e["event"]) for e in logs] == [("warning", "Redis does not persist its data")]
    assert "--appendonly yes" in logs[0]["detail"]


async def test_a_redis_with_an_append_only_file_persists(free_port: Callable[[], int], tmp_path: Path):
    server = RedisServer(free_port(), tmp_path / "redis", appendonly=True).start()
    redis = Redis.from_url(server.url)
    try:
        with capture_logs() as logs:
            found = await warn_unless_persistent(redis, "test")
        assert found is not None and found.persists and found.detail == "AOF enabled"
        assert logs == []
    finally:
        await redis.aclose()
        server.stop()


async def test_a_redis_that_does_not_answer_is_unknown_not_an_error(free_port: Callable[[], int]):
    redis = Redis(port=free_port())
    try:
        assert await check_persistence(redis) is None
    finally:
        await redis.aclose()
