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
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest
import redis
import structlog
from hypothesis import HealthCheck, settings

from tests.support.proxy import TcpProxy

REDIS_DATABASES = 16

# A busy machine (CI beside other work, load average 10) makes any example slow: timing is
# not what these properties test, so neither a deadline nor the too-slow check applies.
settings.register_profile("rsms", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("rsms")

# Services run in the test process log through structlog, which by default prints to
# whatever `sys.stdout` is at the moment: inside a CliRunner that is the command's output,
# and a ledger line landing in a table the test reads fails it. Bind the stream now.
structlog.configure(logger_factory=structlog.PrintLoggerFactory(sys.stderr))


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

    def bindings(self, amqp_url: str) -> set[tuple[str, str]]:
        """(exchange, queue) of every binding on the vhost of `amqp_url` but the default exchange's."""
        vhost = urlsplit(amqp_url).path.lstrip("/")
        listed = subprocess.run(
            [
                *self.exec_prefix,
                "rabbitmqctl",
                "-q",
                "list_bindings",
                "-p",
                vhost,
                "source_name",
                "destination_name",
                "--no-table-headers",
            ],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        rows = (line.split("\t") for line in listed.splitlines())
        return {(row[0], row[1]) for row in rows if len(row) == 2 and row[0]}

    def set_policy(self, amqp_url: str, name: str, pattern: str, definition: str, apply_to: str) -> None:
        """A policy on the vhost of `amqp_url` (a test's own), e.g. RabbitMQ 4's delivery limit."""
        vhost = urlsplit(amqp_url).path.lstrip("/")
        self._ctl("set_policy", "-p", vhost, "--apply-to", apply_to, name, pattern, definition)


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


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="session")
def redis_base_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A Redis server of this test process's own, so the suite never touches anybody's data.

    `RSMS_TEST_REDIS_URL` names a Redis the tests may use as their own instead (they empty
    its databases). Otherwise a `redis-server` is started on a free port (it is installed
    wherever Redis is), or, without one, a container where a Docker engine runs.
    """
    url = os.environ.get("RSMS_TEST_REDIS_URL")
    if url:
        yield url.rstrip("/")
        return
    binary = shutil.which("redis-server")
    if binary is None:
        if not _docker_available():
            pytest.fail("the tests need `redis-server` on PATH (or RSMS_TEST_REDIS_URL, or a Docker engine)")
        from testcontainers.redis import RedisContainer

        with RedisContainer("redis:7") as container:
            yield f"redis://{container.get_container_host_ip()}:{container.get_exposed_port(6379)}"
        return
    data_dir = tmp_path_factory.mktemp("redis")
    for _ in range(5):  # a free port can be taken between picking it and binding it
        port = _free_port()
        server = subprocess.Popen(
            [
                binary,
                "--bind",
                "127.0.0.1",
                "--port",
                str(port),
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(data_dir),
                "--databases",
                str(REDIS_DATABASES),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        client = redis.Redis(port=port)
        try:
            for _ in range(100):
                if server.poll() is not None:
                    break
                try:
                    client.ping()
                    break
                except redis.ConnectionError:
                    time.sleep(0.05)
            if server.poll() is None:
                try:
                    yield f"redis://127.0.0.1:{port}"
                finally:
                    server.terminate()
                    server.wait(10)
                return
        finally:
            client.close()
    pytest.fail("could not start a redis-server of the tests' own")


_next_database = iter(range(10**9))


@pytest.fixture
def redis_url(redis_base_url: str) -> Iterator[str]:
    """A Redis database of this test's own, emptied before and after the test.

    The server is this test process's own (see `redis_base_url`); consecutive tests take
    different databases, so a task a finished test left behind cannot write into the next
    test's keys.
    """
    url = f"{redis_base_url}/{next(_next_database) % REDIS_DATABASES}"
    client = redis.Redis.from_url(url)
    client.flushdb()
    try:
        yield url
    finally:
        client.flushdb()
        client.close()


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
