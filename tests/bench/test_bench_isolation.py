"""The benchmarks keep to data they created: a Redis of their own, never the machine's."""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest
import redis

from bench.ingest_env import BenchEnv


def test_the_ingest_bench_runs_on_a_redis_server_of_its_own_and_stops_it():
    with BenchEnv(given_redis_url="") as env:
        port = urlsplit(env.redis_url).port
        assert port not in (None, 6379)
        client = redis.Redis.from_url(env.redis_url)
        client.set("rsms-bench-probe", "1")
        env.reset_redis()  # empties only its own server
        assert client.dbsize() == 0
        client.close()
    gone = redis.Redis(port=port, socket_connect_timeout=1)
    with pytest.raises(redis.ConnectionError):
        gone.ping()
    gone.close()
