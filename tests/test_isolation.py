"""The suite keeps to data it created: the machine's own Redis never sees a test's keys."""

from __future__ import annotations

import os
import uuid

import pytest
import redis


def test_a_tests_redis_is_not_the_machines_redis(redis_url: str) -> None:
    if os.environ.get("RSMS_TEST_REDIS_URL"):
        pytest.skip("RSMS_TEST_REDIS_URL names the Redis the tests may use")
    key = f"rsms-isolation-{uuid.uuid4().hex}"
    ours = redis.Redis.from_url(redis_url)
    ours.set(key, "1", ex=60)
    machine = redis.Redis(port=6379, socket_connect_timeout=1)
    try:
        databases = range(16)
        found = [db for db in databases if machine.execute_command("SELECT", db) and machine.exists(key)]
    except redis.ConnectionError:
        found = []  # no Redis on the default port: nothing of anybody's to touch
    finally:
        machine.close()
        ours.delete(key)
        ours.close()
    assert found == []
