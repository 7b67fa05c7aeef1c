"""`RSMS_REDIS_URL`'s forms, read by a plain function; and what counts as a confirmed write."""

from __future__ import annotations

import pytest

from shared.redis_connection import Durability, RedisTarget, confirmed, parse_redis_url
from shared.settings import InvalidSetting, ServiceSettings


def test_a_plain_url_names_one_server_and_its_database() -> None:
    assert parse_redis_url("redis://localhost:6379/3") == RedisTarget("server", (("localhost", 6379),), db=3)
    assert parse_redis_url("redis://cache") == RedisTarget("server", (("cache", 6379),))


def test_credentials_and_tls() -> None:
    target = parse_redis_url("rediss://app:s%40cret@redis.example:6380/0")
    assert (target.username, target.password, target.tls) == ("app", "s@cret", True)
    assert target.hosts == (("redis.example", 6380),)
    assert parse_redis_url("redis://:only-password@h:1").username is None
    assert parse_redis_url("redis://:only-password@h:1").password == "only-password"


def test_a_sentinel_url_names_the_sentinels_the_service_and_a_database() -> None:
    target = parse_redis_url("redis+sentinel://u:p@10.0.0.1:26379,10.0.0.2,10.0.0.3:26380/mymaster/2")
    assert target == RedisTarget(
        "sentinel",
        (("10.0.0.1", 26379), ("10.0.0.2", 26379), ("10.0.0.3", 26380)),
        db=2,
        service="mymaster",
        username="u",
        password="p",
    )
    assert parse_redis_url("redis+sentinel://s1:26379/mymaster").db == 0


def test_a_sentinel_url_without_a_service_is_refused() -> None:
    with pytest.raises(ValueError, match="service"):
        parse_redis_url("redis+sentinel://s1:26379")


def test_a_cluster_url_names_start_nodes_and_refuses_a_database_other_than_0() -> None:
    target = parse_redis_url("rediss+cluster://a:7000,b:7001")
    assert target == RedisTarget("cluster", (("a", 7000), ("b", 7001)), tls=True)
    assert parse_redis_url("redis+cluster://a:7000/0").db == 0
    with pytest.raises(ValueError, match="only database 0"):
        parse_redis_url("redis+cluster://a:7000/1")


@pytest.mark.parametrize(
    ("url", "complaint"),
    [
        ("http://h:1", "unsupported Redis URL scheme"),
        ("localhost:6379", "unsupported Redis URL scheme"),
        ("redis://a:1,b:2", "names one server"),
        ("redis://h:port", "bad port"),
        ("redis://h:1/zero", "must be a number"),
        ("redis+cluster://a:1,,b:2", "needs a host"),
        ("redis+sentinel://s:1/svc/0/extra", "unexpected path"),
    ],
)
def test_malformed_urls_say_what_is_wrong(url: str, complaint: str) -> None:
    with pytest.raises(ValueError, match=complaint):
        parse_redis_url(url)


def test_the_setting_is_checked_at_start(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RSMS_REDIS_URL", "redis+cluster://a:7000/4")
    with pytest.raises(InvalidSetting, match=r"RSMS_REDIS_URL=.*only database 0"):
        ServiceSettings()


def test_a_write_counts_once_the_asked_replicas_have_it() -> None:
    assert confirmed(0, Durability(replicas=0))
    assert confirmed(1, Durability(replicas=1))
    assert confirmed(2, Durability(replicas=1))
    assert not confirmed(0, Durability(replicas=1))
    assert not confirmed(1, Durability(replicas=2))


async def test_a_plain_url_builds_the_client_redis_py_builds_from_it() -> None:
    from shared.redis_connection import connect

    client = connect("redis://u:p%40w@127.0.0.1:6380/3", socket_timeout=1.5)
    try:
        options = client.connection_pool.connection_kwargs
        assert (options["username"], options["password"], options["db"], options["port"]) == ("u", "p@w", 3, 6380)
        assert options["socket_timeout"] == 1.5
    finally:
        await client.aclose()
