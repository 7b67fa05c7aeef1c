"""A 3-node RabbitMQ cluster on this machine, built the way a user can, for the cluster tests.

Each node has its own name (`rsms-<pid>-<n>@localhost`), free AMQP and distribution ports,
its own data, log and config files under a temp dir, and no plugins. The machine's own
node (`rabbit@localhost`, port 5672) is never touched: every CLI call names its node with
`-n`, and nodes are stopped by the PID they wrote, never by name.

The Erlang cookie is the user's `~/.erlang.cookie` (the server and the CLI both read it);
it is created, private, if the user has none.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

RABBITMQ_BIN = Path("/usr/lib/rabbitmq/bin")
"""The real scripts: /usr/sbin's wrappers switch to the `rabbitmq` user (and its cookie)."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Node:
    name: str
    amqp_port: int
    dist_port: int
    base: Path
    process: subprocess.Popen[bytes] | None = None
    pid: int | None = None  # the Erlang VM's, from its pid file

    @property
    def amqp_url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.amqp_port}/"

    def url(self, vhost: str = "/") -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.amqp_port}/{vhost.replace('/', '%2F')}"

    @property
    def alive(self) -> bool:
        return self.pid is not None and _pid_alive(self.pid)

    def environment(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            RABBITMQ_NODENAME=self.name,
            RABBITMQ_NODE_IP_ADDRESS="127.0.0.1",
            RABBITMQ_NODE_PORT=str(self.amqp_port),
            RABBITMQ_DIST_PORT=str(self.dist_port),
            RABBITMQ_MNESIA_BASE=str(self.base / "mnesia"),
            RABBITMQ_LOG_BASE=str(self.base / "log"),
            RABBITMQ_PID_FILE=str(self.base / "node.pid"),
            RABBITMQ_ENABLED_PLUGINS_FILE=str(self.base / "enabled_plugins"),
            # Not /etc/rabbitmq's: that one listens on 5672, the machine's own node's port.
            RABBITMQ_CONFIG_FILE=str(self.base / "rabbitmq.conf"),
            RABBITMQ_CONF_ENV_FILE=str(self.base / "rabbitmq-env.conf"),
            RABBITMQ_ADVANCED_CONFIG_FILE=str(self.base / "advanced.config"),
            ERL_EPMD_ADDRESS="127.0.0.1",
            HOME=str(Path.home()),
        )
        return env


@dataclass
class RabbitCluster:
    nodes: list[Node]
    root: Path
    _vhosts: list[str] = field(default_factory=list)

    @property
    def amqp_urls(self) -> list[str]:
        return [node.amqp_url for node in self.nodes]

    def urls(self, vhost: str) -> str:
        """`RSMS_AMQP_URL` for every node, comma-separated, in a vhost."""
        return ",".join(node.url(vhost) for node in self.nodes)

    def live_node(self) -> Node:
        return next(node for node in self.nodes if node.alive)

    def node_named(self, name: str) -> Node:
        return next(node for node in self.nodes if node.name == name)

    def node_on_port(self, port: int) -> Node:
        return next(node for node in self.nodes if node.amqp_port == port)

    def ctl(self, *args: str, node: Node | None = None, timeout: float = 60) -> str:
        node = node or self.live_node()
        done = subprocess.run(
            [str(RABBITMQ_BIN / "rabbitmqctl"), "-n", node.name, *args],
            env=node.environment(),
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if done.returncode != 0:
            raise RuntimeError(f"rabbitmqctl -n {node.name} {' '.join(args)}: {done.stderr.strip()}")
        return done.stdout

    def add_vhost(self, vhost: str) -> str:
        self.ctl("add_vhost", vhost)
        self.ctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
        self._vhosts.append(vhost)
        return vhost

    def queue_leader(self, vhost: str, queue: str, wait_seconds: float = 30.0) -> Node:
        """The node leading a quorum queue now. Right after a node loss a queue whose leader
        died is left out of the listing until its election ends: asked again until then."""
        deadline = time.monotonic() + wait_seconds
        while True:
            out = self.ctl("list_queues", "-p", vhost, "name", "leader", "--quiet", "--no-table-headers")
            for line in out.splitlines():
                parts = line.split()
                if len(parts) == 2 and parts[0] == queue:
                    return self.node_named(parts[1])
            if time.monotonic() > deadline:
                raise LookupError(f"{queue} in {vhost}: no leader in {out!r}")
            time.sleep(0.5)

    def connected_nodes(self, vhost: str) -> dict[str, int]:
        """How many client connections each node holds in a vhost."""
        counts: dict[str, int] = {}
        for node in self.nodes:
            if not node.alive:
                continue
            out = self.ctl("list_connections", "vhost", "--quiet", "--no-table-headers", node=node)
            counts[node.name] = sum(1 for line in out.splitlines() if line.strip() == vhost)
        return counts

    def kill(self, node: Node) -> None:
        """kill -9 the node's VM: no goodbye to clients or peers."""
        assert node.pid is not None
        os.kill(node.pid, signal.SIGKILL)
        _wait_until(lambda: not _pid_alive(node.pid or 0), f"{node.name} gone", 30)
        if node.process is not None:
            node.process.wait(timeout=30)

    def stop(self) -> None:
        for node in self.nodes:
            if node.pid is not None and _pid_alive(node.pid):
                os.kill(node.pid, signal.SIGTERM)
        deadline = time.monotonic() + 30
        for node in self.nodes:
            while node.pid is not None and _pid_alive(node.pid) and time.monotonic() < deadline:
                time.sleep(0.2)
            if node.pid is not None and _pid_alive(node.pid):
                os.kill(node.pid, signal.SIGKILL)
            if node.process is not None:
                try:
                    node.process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    node.process.kill()


def ensure_cookie() -> None:
    cookie = Path.home() / ".erlang.cookie"
    if not cookie.exists():
        cookie.write_text(secrets.token_hex(20).upper())
        cookie.chmod(0o400)


def start_node(node: Node) -> None:
    for sub in ("mnesia", "log"):
        (node.base / sub).mkdir(parents=True, exist_ok=True)
    (node.base / "enabled_plugins").write_text("[].\n")
    (node.base / "rabbitmq-env.conf").write_text("")
    (node.base / "advanced.config").write_text("[].\n")
    (node.base / "rabbitmq.conf").write_text(
        f"listeners.tcp.1 = 127.0.0.1:{node.amqp_port}\n"
        "loopback_users.guest = true\n"
        # A node on a busy 2-core machine: no disk or memory alarm blocks publishers here.
        "disk_free_limit.absolute = 50MB\n"
        "vm_memory_high_watermark.relative = 0.8\n"
    )
    pid_file = node.base / "node.pid"
    pid_file.unlink(missing_ok=True)
    log = (node.base / "log" / "server.out").open("ab")
    node.process = subprocess.Popen(
        [str(RABBITMQ_BIN / "rabbitmq-server")],
        env=node.environment(),
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    _wait_until(lambda: pid_file.is_file() and pid_file.read_text().strip().isdigit(), f"{node.name} pid", 120)
    node.pid = int(pid_file.read_text().strip())
    subprocess.run(
        [str(RABBITMQ_BIN / "rabbitmqctl"), "-n", node.name, "wait", str(pid_file), "--timeout", "180"],
        env=node.environment(),
        check=True,
        capture_output=True,
        timeout=200,
    )


@contextmanager
def rabbit_cluster(size: int = 3) -> Iterator[RabbitCluster]:
    """Start `size` nodes, join them into one cluster, and stop them (by PID) at the end."""
    ensure_cookie()
    root = Path(tempfile.mkdtemp(prefix="rsms-rabbit-cluster-"))
    prefix = f"rsms-{os.getpid()}"
    nodes = [Node(f"{prefix}-{i}@localhost", free_port(), free_port(), root / f"node{i}") for i in range(1, size + 1)]
    cluster = RabbitCluster(nodes, root)
    try:
        for node in nodes:
            start_node(node)
        first = nodes[0]
        for node in nodes[1:]:
            cluster.ctl("stop_app", node=node)
            cluster.ctl("join_cluster", first.name, node=node)
            cluster.ctl("start_app", node=node)
        running = cluster.ctl("eval", "length(rabbit_nodes:all_running()).", node=first).strip()
        if running != str(size):
            raise RuntimeError(f"cluster has {running} running nodes, not {size}")
        yield cluster
    finally:
        cluster.stop()
        shutil.rmtree(root, ignore_errors=True)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie (our child, not reaped yet) is gone for our purpose.
    try:
        return Path(f"/proc/{pid}/status").read_text().find("State:\tZ") < 0
    except OSError:
        return False


def _wait_until(condition: object, what: str, timeout: float) -> None:
    assert callable(condition)
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"waited {timeout}s for {what}")
        time.sleep(0.2)
