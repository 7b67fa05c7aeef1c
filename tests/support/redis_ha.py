"""Redis in its production topologies, built from the installed `redis-server` on free
ports with data in a temp dir of the test's own (never the machine's 127.0.0.1:6379):

- `SentinelSet`: a primary, its replicas and three sentinels watching them (service "rsms");
- `RedisClusterSet`: a Redis Cluster of three masters, each with its replicas.

Every process is started here and stopped by its PID (`stop`); a node's `kill` is kill -9,
for the failover tests.
"""

from __future__ import annotations

import random
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import redis
from redis.crc import key_slot

SERVICE = "rsms"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def free_cluster_port() -> int:
    """A free port whose cluster bus port (+10000) is free and valid too."""
    while True:
        port = free_port()
        if port + 10_000 > 65_535:
            port = random.randint(20_000, 50_000)
        try:
            for candidate in (port, port + 10_000):
                with socket.socket() as sock:
                    sock.bind(("127.0.0.1", candidate))
        except OSError:
            continue
        return port


def _binary() -> str:
    binary = shutil.which("redis-server")
    if binary is None:
        raise RuntimeError("`redis-server` is not on PATH (it is installed wherever Redis is)")
    return binary


def _until(check: Callable[[], Any], what: str, timeout: float = 60) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        try:
            result = check()
        except (redis.RedisError, OSError):
            result = None
        if result:
            return result
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(0.1)


def _replicas_confirm(primary: _Node, replicas: int, key: str = "redis-ha:probe") -> bool:
    """Whether `replicas` replicas acknowledge a write at once: for a few seconds after
    its first sync a replica acknowledges late (it rewrites its append-only file)."""
    with primary.client() as client:
        client.set(key, "1")
        return int(client.execute_command("WAIT", replicas, 200)) >= replicas


class _Node:
    """One redis-server (or sentinel) process with its own directory and config file."""

    def __init__(self, directory: Path, port: int, config: list[str], *, sentinel: bool = False) -> None:
        self.port = port
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self.config_file = directory / ("sentinel.conf" if sentinel else "redis.conf")
        self.config_file.write_text("\n".join([f"port {port}", "bind 127.0.0.1", f'dir "{directory}"', *config]) + "\n")
        arguments = [_binary(), str(self.config_file), *(["--sentinel"] if sentinel else [])]
        self.process: subprocess.Popen[bytes] = subprocess.Popen(
            arguments, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )

    def client(self) -> redis.Redis:
        return redis.Redis(port=self.port, socket_timeout=2, socket_connect_timeout=2, decode_responses=True)

    def wait_answering(self) -> None:
        def answers() -> bool:
            if self.process.poll() is not None:
                raise RuntimeError(f"redis on port {self.port} exited with {self.process.returncode}")
            with self.client() as client:
                return bool(client.ping())

        _until(answers, f"redis on port {self.port}")

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    def kill(self) -> None:
        if self.alive:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)

    def stop(self) -> None:
        if self.alive:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()


_DATA_NODE = ["appendonly yes", "appendfsync everysec", 'save ""', "protected-mode no"]


class SentinelSet:
    """A primary and its replicas under three sentinels; `url` is the gateway's RSMS_REDIS_URL.

    With two replicas, one is left to confirm writes (WAIT 1) after the other is promoted."""

    def __init__(self, root: Path, *, replicas: int = 1, down_after_ms: int = 1000) -> None:
        primary = _Node(root / "primary", free_port(), _DATA_NODE)
        primary.wait_answering()
        self.data_nodes = [primary]
        for i in range(replicas):
            replica = _Node(root / f"replica{i}", free_port(), [*_DATA_NODE, f"replicaof 127.0.0.1 {primary.port}"])
            replica.wait_answering()
            self.data_nodes.append(replica)
        self.sentinels = [
            _Node(
                root / f"sentinel{i}",
                free_port(),
                [
                    f"sentinel monitor {SERVICE} 127.0.0.1 {primary.port} 2",
                    f"sentinel down-after-milliseconds {SERVICE} {down_after_ms}",
                    f"sentinel failover-timeout {SERVICE} 10000",
                    f"sentinel parallel-syncs {SERVICE} {replicas}",
                ],
                sentinel=True,
            )
            for i in range(3)
        ]
        for node in self.sentinels:
            node.wait_answering()
        hosts = ",".join(f"127.0.0.1:{node.port}" for node in self.sentinels)
        self.url = f"redis+sentinel://{hosts}/{SERVICE}/0"
        self.wait_ready(replicas)

    def primary(self) -> _Node:
        """The node the sentinels name as primary now."""
        with self.sentinels[0].client() as client:
            _host, port = client.execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", SERVICE)
        return next(node for node in self.data_nodes if node.port == int(port))

    def wait_ready(self, replicas: int, timeout: float = 60) -> None:
        """Every sentinel knows the primary's `replicas` replicas and the other sentinels,
        and the replicas are in sync."""

        def ready() -> bool:
            for node in self.sentinels:
                with node.client() as client:
                    info = client.execute_command("SENTINEL", "MASTER", SERVICE)
                    fields = dict(zip(info[::2], info[1::2], strict=True)) if isinstance(info, list) else info
                    if int(fields["num-slaves"]) < replicas or int(fields["num-other-sentinels"]) < 2:
                        return False
            return _replicas_confirm(self.primary(), replicas)

        _until(ready, "the sentinels to know the replicas and each other", timeout)

    def wait_failed_over(self, killed: _Node, timeout: float = 60) -> _Node:
        """The new primary, once the sentinels name one and it answers as primary."""

        def promoted() -> _Node | None:
            node = self.primary()
            if node is killed:
                return None
            with node.client() as client:
                return node if client.info("replication")["role"] == "master" else None

        return _until(promoted, "the sentinels' failover", timeout)  # type: ignore[no-any-return]

    def nodes(self) -> list[_Node]:
        return [*self.data_nodes, *self.sentinels]

    def stop(self) -> None:
        for node in self.nodes():
            node.stop()


def _own_key(client: redis.Redis) -> str:
    """A key in a slot the node `client` talks to serves."""
    own = client.cluster("myid")
    ranges = [(start, end) for start, end, master, *_ in client.cluster("slots") if master[2] == own]
    return next(
        key
        for key in (f"redis-ha:probe:{i}" for i in range(100_000))
        if any(start <= key_slot(key.encode()) <= end for start, end in ranges)
    )


class RedisClusterSet:
    """Three masters with `replicas` replicas each in one Redis Cluster; `url` is the
    gateway's RSMS_REDIS_URL."""

    def __init__(self, root: Path, *, replicas: int = 1, node_timeout_ms: int = 2000) -> None:
        self.replicas = replicas
        self.nodes = [
            _Node(
                root / f"node{i}",
                free_cluster_port(),
                [
                    *_DATA_NODE,
                    "cluster-enabled yes",
                    "cluster-config-file nodes.conf",
                    f"cluster-node-timeout {node_timeout_ms}",
                ],
            )
            for i in range(3 * (1 + replicas))
        ]
        for node in self.nodes:
            node.wait_answering()
        cli = shutil.which("redis-cli")
        if cli is None:
            raise RuntimeError("`redis-cli` is not on PATH")
        subprocess.run(
            [
                cli,
                "--cluster",
                "create",
                *(f"127.0.0.1:{node.port}" for node in self.nodes),
                "--cluster-replicas",
                str(replicas),
                "--cluster-yes",
            ],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            timeout=120,
        )
        self.url = "redis+cluster://" + ",".join(f"127.0.0.1:{node.port}" for node in self.nodes[:3])
        self.wait_ok()

    def wait_ok(self, timeout: float = 60, replicas: int | None = None) -> None:
        """Every live node sees the cluster as ok, and `replicas` (all) of each master's
        replicas confirm its writes."""
        replicas = self.replicas if replicas is None else replicas

        def ok() -> bool:
            for node in self.nodes:
                if not node.alive:
                    continue
                with node.client() as client:
                    if client.cluster("info")["cluster_state"] != "ok":
                        return False
                    replication = client.info("replication")
                    if replication["role"] == "slave" and replication.get("master_link_status") != "up":
                        return False
                if replication["role"] == "master" and not _replicas_confirm(node, replicas, _own_key(client)):
                    return False
            return True

        _until(ok, "the cluster to be ok", timeout)

    def master_of(self, key: str) -> _Node:
        """The live node that is master of `key`'s slot now."""
        for node in self.nodes:
            if not node.alive:
                continue
            with node.client() as client:
                slot = client.cluster("keyslot", key)
                for start, end, master, *_ in client.cluster("slots"):
                    if start <= slot <= end:
                        port = int(master[1])
                        return next(n for n in self.nodes if n.port == port)
        raise RuntimeError("no live node")

    def wait_failed_over(self, killed: _Node, key: str, timeout: float = 60) -> _Node:
        """The new master of `key`'s slot, once the cluster is ok again without `killed`."""

        def promoted() -> _Node | None:
            node = self.master_of(key)
            if node is killed:
                return None
            self.wait_ok(timeout=0.5, replicas=1)
            return node

        return _until(promoted, "the cluster's failover", timeout)  # type: ignore[no-any-return]

    def masters(self) -> list[_Node]:
        found = []
        for node in self.nodes:
            if node.alive:
                with node.client() as client:
                    if client.info("replication")["role"] == "master":
                        found.append(node)
        return found

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()
