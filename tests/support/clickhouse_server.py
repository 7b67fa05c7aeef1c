"""ClickHouse servers in Docker (testcontainers) for the tests that run the ledger on a
server or on a 2-replica cluster with Keeper; everything else uses embedded chDB.

Where no Docker engine answers, those tests are skipped with the reason. Where one does,
they run, and a server that cannot be started fails them (nothing here catches it).

The cluster is the one the ledger's README describes: cluster `rsms`, one shard, replicas
`ch1` and `ch2` (macros `shard`, `replica`), ClickHouse Keeper embedded in `ch1`.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

IMAGE = os.environ.get("RSMS_TEST_CLICKHOUSE_IMAGE", "clickhouse/clickhouse-server:24.8")
CLUSTER = "rsms"
KEEPER_NODE = "ch1"
HTTP_PORT = 8123

USERS_XML = """<clickhouse>
  <users>
    <default>
      <password></password>
      <networks><ip>::/0</ip></networks>
      <access_management>1</access_management>
    </default>
  </users>
</clickhouse>
"""


def docker_engine_or_skip() -> None:
    """Skips the calling test unless a Docker engine answers."""
    try:
        import docker

        docker.from_env().ping()
    except Exception as error:
        pytest.skip(
            f"no Docker engine answers ({type(error).__name__}): the ClickHouse server tests start "
            f"{IMAGE} with testcontainers"
        )


def cluster_config(node: str, nodes: list[str]) -> str:
    """config.d of one node: the cluster, its macros, Keeper (served by KEEPER_NODE)."""
    replicas = "".join(f"<replica><host>{n}</host><port>9000</port></replica>" for n in nodes)
    keeper_server = (
        f"""
  <keeper_server>
    <tcp_port>9181</tcp_port>
    <server_id>1</server_id>
    <log_storage_path>/var/lib/clickhouse/coordination/log</log_storage_path>
    <snapshot_storage_path>/var/lib/clickhouse/coordination/snapshots</snapshot_storage_path>
    <raft_configuration><server><id>1</id><hostname>{KEEPER_NODE}</hostname><port>9234</port></server></raft_configuration>
  </keeper_server>"""
        if node == KEEPER_NODE
        else ""
    )
    return f"""<clickhouse>
  <remote_servers>
    <{CLUSTER}>
      <shard><internal_replication>true</internal_replication>{replicas}</shard>
    </{CLUSTER}>
  </remote_servers>
  <macros><shard>01</shard><replica>{node}</replica></macros>
  <zookeeper><node><host>{KEEPER_NODE}</host><port>9181</port></node></zookeeper>
  <distributed_ddl><path>/clickhouse/task_queue/ddl</path></distributed_ddl>{keeper_server}
</clickhouse>
"""


def _wait_until_answers(url: str, what: str, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if httpx.get(f"{url}/ping", timeout=2.0).text.strip() == "Ok.":
                return
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not answer within {timeout}s")
        time.sleep(0.5)


class Node:
    def __init__(self, name: str, container: Any) -> None:
        self.name = name
        self.container = container

    @property
    def url(self) -> str:
        host = self.container.get_container_host_ip()
        return f"http://{host}:{self.container.get_exposed_port(HTTP_PORT)}"

    @property
    def host_port(self) -> str:
        return self.url.removeprefix("http://")

    def kill(self) -> None:
        """SIGKILL, as a crashed node."""
        self.container.get_wrapped_container().kill()


def server_dsn(nodes: list[Node]) -> str:
    return "http://default:@" + ",".join(node.host_port for node in nodes) + "/"


@contextlib.contextmanager
def clickhouse_nodes(config_dir: Path, names: list[str], *, cluster: bool) -> Iterator[list[Node]]:
    """Started ClickHouse servers on a network of their own, each reachable by its name."""
    from testcontainers.core.container import DockerContainer
    from testcontainers.core.network import Network

    config_dir.mkdir(parents=True, exist_ok=True)
    users = config_dir / "users.xml"
    users.write_text(USERS_XML)
    nodes: list[Node] = []
    with Network() as network:
        try:
            for name in names:
                container = (
                    DockerContainer(IMAGE)
                    .with_network(network)
                    .with_network_aliases(name)
                    .with_exposed_ports(HTTP_PORT)
                    # The image would otherwise restrict `default` to localhost.
                    .with_env("CLICKHOUSE_SKIP_USER_SETUP", "1")
                    .with_volume_mapping(str(users), "/etc/clickhouse-server/users.d/rsms-tests.xml", "ro")
                )
                if cluster:
                    config = config_dir / f"{name}.xml"
                    config.write_text(cluster_config(name, names))
                    container = container.with_volume_mapping(
                        str(config), "/etc/clickhouse-server/config.d/rsms-cluster.xml", "ro"
                    )
                container.start()
                nodes.append(Node(name, container))
            for node in nodes:
                _wait_until_answers(node.url, f"ClickHouse {node.name} ({IMAGE})")
            yield nodes
        finally:
            for node in nodes:
                with contextlib.suppress(Exception):  # a node a test killed is gone already
                    node.container.stop()
