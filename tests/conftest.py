"""Fixtures for the real services every integration test talks to.

Each test gets its own RabbitMQ vhost, its own Redis database and its own ClickHouse
database, so tests run in parallel (`pytest -n auto`) and leave nothing behind.

RabbitMQ and Redis are taken from `RSMS_TEST_AMQP_URL` / `RSMS_TEST_REDIS_URL` (default:
localhost). Where they do not answer and a Docker engine does, testcontainers starts them.
ClickHouse is embedded chDB: one data directory per test process (chDB allows one per
process), one database per test.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest
import redis

from tests.support.proxy import TcpProxy

REDIS_DATABASES = 16


def _answers(url: str, default_port: int) -> bool:
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname or "localhost", parts.port or default_port), 1):
            return True
    except OSError:
        return False


def _docker_available() -> bool:
    try:
        import docker

        docker.from_env().ping()
        return True
    except Exception:
        return False


@dataclass
class RabbitAdmin:
    """Creates and deletes vhosts on the test RabbitMQ."""

    base_url: str
    exec_prefix: list[str]

    def _ctl(self, *args: str) -> None:
        subprocess.run([*self.exec_prefix, "rabbitmqctl", "-q", *args], check=True, capture_output=True)

    def create_vhost(self, name: str) -> str:
        self._ctl("add_vhost", name)
        user = urlsplit(self.base_url).username or "guest"
        self._ctl("set_permissions", "-p", name, user, ".*", ".*", ".*")
        parts = urlsplit(self.base_url)
        return urlunsplit((parts.scheme, parts.netloc, "/" + name, "", ""))

    def delete_vhost(self, name: str) -> None:
        self._ctl("delete_vhost", name)


@pytest.fixture(scope="session")
def rabbit_admin() -> Iterator[RabbitAdmin]:
    url = os.environ.get("RSMS_TEST_AMQP_URL", "amqp://guest:guest@localhost:5672/")
    if _answers(url, 5672) and shutil.which("rabbitmqctl"):
        yield RabbitAdmin(url, [])
        return
    if not _docker_available():
        pytest.fail(
            f"RabbitMQ does not answer at {url} and no Docker engine is available: "
            "start it with `rabbitmq-server -detached`"
        )
    from testcontainers.rabbitmq import RabbitMqContainer

    with RabbitMqContainer("rabbitmq:3.13-management") as container:
        host, port = container.get_container_host_ip(), container.get_exposed_port(5672)
        wrapped = container.get_wrapped_container()
        yield RabbitAdmin(f"amqp://guest:guest@{host}:{port}/", ["docker", "exec", wrapped.id])


@pytest.fixture
def amqp_url(rabbit_admin: RabbitAdmin) -> Iterator[str]:
    vhost = f"rsms-test-{uuid.uuid4().hex[:12]}"
    url = rabbit_admin.create_vhost(vhost)
    try:
        yield url
    finally:
        rabbit_admin.delete_vhost(vhost)


@pytest.fixture(scope="session")
def redis_base_url() -> Iterator[str]:
    url = os.environ.get("RSMS_TEST_REDIS_URL", "redis://localhost:6379")
    if _answers(url, 6379):
        yield url.rstrip("/")
        return
    if not _docker_available():
        pytest.fail(
            f"Redis does not answer at {url} and no Docker engine is available: start it "
            "with `redis-server --daemonize yes --port 6379 --save '' --appendonly no`"
        )
    from testcontainers.redis import RedisContainer

    with RedisContainer("redis:7") as container:
        yield f"redis://{container.get_container_host_ip()}:{container.get_exposed_port(6379)}"


LEASE_KEY = "__rsms_test_lease__"


@pytest.fixture
def redis_url(redis_base_url: str) -> Iterator[str]:
    """A Redis database of this test's own, emptied around the test.

    A test leases a free database (1-15; 0 is left to a gateway a developer runs on the same
    Redis) with a key that expires, so parallel test processes never share one and a killed
    run frees its databases by itself.
    """
    token = uuid.uuid4().hex
    for _ in range(600):
        for index in range(1, REDIS_DATABASES):
            client = redis.Redis.from_url(f"{redis_base_url}/{index}")
            if client.set(LEASE_KEY, token, nx=True, ex=900):
                try:
                    for key in client.scan_iter(count=1000):
                        if key != LEASE_KEY.encode():
                            client.delete(key)
                    yield f"{redis_base_url}/{index}"
                finally:
                    client.flushdb()
                    client.close()
                return
            client.close()
        time.sleep(0.5)
    pytest.fail("no free Redis database for this test within 5 minutes")


@pytest.fixture(scope="session")
def chdb_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The chDB data directory of this test process (chDB allows one per process)."""
    return tmp_path_factory.mktemp("chdb")


@dataclass
class ClickHouseTarget:
    dsn: str
    database: str

    def client(self) -> Any:
        import clickhouse_connect

        return clickhouse_connect.get_client(dsn=self.dsn)


@pytest.fixture
def clickhouse(chdb_path: Path) -> Iterator[ClickHouseTarget]:
    target = ClickHouseTarget(f"chdb://{chdb_path}", f"rsms_test_{uuid.uuid4().hex[:12]}")
    try:
        yield target
    finally:
        target.client().command(f"DROP DATABASE IF EXISTS {target.database}")


@pytest.fixture
def free_port() -> Callable[[], int]:
    def pick() -> int:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            return int(sock.getsockname()[1])

    return pick


@pytest.fixture
async def tcp_proxy() -> AsyncIterator[Callable[[str, int], asyncio.Future[TcpProxy]]]:
    """Starts proxies in front of a real service, so a test can cut the connection and
    bring it back: the service itself keeps running for the other tests."""
    proxies: list[TcpProxy] = []

    async def start(host: str, port: int) -> TcpProxy:
        proxy = TcpProxy(host, port)
        await proxy.start()
        proxies.append(proxy)
        return proxy

    yield start  # type: ignore[misc]
    for proxy in proxies:
        await proxy.stop()


@pytest.fixture
def accounts_file(tmp_path: Path) -> Path:
    return tmp_path / "accounts.toml"


@pytest.fixture
def ingest_settings(amqp_url: str, redis_url: str, accounts_file: Path) -> Any:
    from services.ingest.settings import IngestSettings

    return IngestSettings(
        amqp_url=amqp_url,
        redis_url=redis_url,
        accounts_file=accounts_file,
        accounts_reload_seconds=0.1,
        publish_timeout_seconds=3.0,
        redis_timeout_seconds=1.0,
    )
