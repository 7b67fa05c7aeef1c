"""The whole gateway as a new user first meets it: `rsms up` in an empty directory, with the
demo project it creates and the test key it prints once.

For tests that act as that user (the README's examples, the SDK against every endpoint).
It has its own RabbitMQ vhost and its own redis-server, so it can serve a whole test
module while other tests run beside it.
"""

from __future__ import annotations

import socket
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.support.redis_server import RedisServer
from tests.support.rsms_up import PORT_NAMES, Gateway, rsms_up_runner


@dataclass
class DemoGateway:
    up: Gateway
    ports: dict[str, int]
    demo_key: str
    directory: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.ports['ingest']}"

    @property
    def accounts_file(self) -> Path:
        return self.directory / "var" / "accounts.toml"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def demo_gateway(rabbit_admin: Any, directory: Path) -> Iterator[DemoGateway]:
    """`rsms up` from `directory` until the block ends; `rabbit_admin` is the session's
    fixture of that name (it makes the vhost)."""
    vhost = f"rsms-test-{uuid.uuid4().hex[:12]}"
    amqp_url = rabbit_admin.create_vhost(vhost)
    redis = RedisServer(free_port(), directory / "redis", appendonly=True).start()
    ports = {name: free_port() for name in PORT_NAMES}
    try:
        with rsms_up_runner(directory, amqp_url, redis.url, ports) as start:
            up = start()
            key = up.wait_for(r"Bearer (sk_test_[A-Za-z0-9]{40})").group(1)
            up.wait_for(r"RSMS Gateway is up")
            yield DemoGateway(up, ports, key, directory)
    finally:
        redis.stop()
        rabbit_admin.delete_vhost(vhost)
