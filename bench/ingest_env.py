"""The throw-away world `bench.ingest_send` runs in, and the two servers it measures.

A fresh RabbitMQ vhost (deleted at the end), a redis-server of its own on a free port (or
the Redis `RSMS_BENCH_REDIS_URL` names, which the bench may then empty: it never empties a
Redis it did not start otherwise), an accounts file in a temp dir
with one project whose limits are raised so the limiter admits the load (it still runs on
every request: that is part of what is measured). Nothing is left behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from urllib.parse import urlsplit, urlunsplit

import aio_pika
import httpx
import msgspec
import redis

from shared import accounts as store
from shared.topology import DISPATCH_QUEUE, LEDGER_ACCEPTED_QUEUE
from tests.support.redis_server import RedisServer

ROOT = Path(__file__).resolve().parents[1]
TAG = "BENCH"
# High enough that no limit binds at any rate this machine reaches in a run.
RAISED_LIMITS = store.ProjectLimits(
    requests_per_minute=50_000_000, tag_requests_per_minute=50_000_000, concurrent_requests=100_000
)
ACCEPTED_QUEUES = (DISPATCH_QUEUE.name, LEDGER_ACCEPTED_QUEUE.name)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def children(pid: int) -> list[int]:
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def server_workers(pid: int) -> list[int]:
    """The worker processes of the server `pid` (`rsms ingest`, or `bench.ingest_baseline`):
    its children that multiprocessing's spawn started (`spawn_main` on their command line),
    not its resource tracker, a child too."""
    workers = []
    for child in children(pid):
        with contextlib.suppress(OSError):
            if b"spawn_main" in Path(f"/proc/{child}/cmdline").read_bytes():
                workers.append(child)
    return workers


def rabbitmqctl(*args: str) -> None:
    subprocess.run(["rabbitmqctl", "-q", *args], check=True, capture_output=True, timeout=60)


@dataclass
class Server:
    name: str
    port: int
    command: list[str]
    env: dict[str, str]
    log_path: Path
    process: subprocess.Popen[bytes] | None = None
    cwd: Path = ROOT

    def start(self) -> None:
        log = self.log_path.open("wb")
        # A new session, so stopping it reaches uvicorn's workers (and multiprocessing's
        # resource tracker) and nothing else.
        self.process = subprocess.Popen(
            self.command,
            cwd=self.cwd,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()

    def wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited at start:\n{self.tail()}")
            try:
                url = f"http://127.0.0.1:{self.port}/health/ready"
                if httpx.get(url, timeout=1.0).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"{self.name} not ready within {timeout:.0f}s:\n{self.tail()}")

    def worker_pids(self) -> list[int]:
        """uvicorn's worker processes (for py-spy): `server_workers` of the server process."""
        if self.process is None:
            return []
        return server_workers(self.process.pid)

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        # SIGINT: uvicorn's graceful stop, in the supervisor and in each worker (lifespan
        # shutdown closes broker and Redis).
        os.killpg(self.process.pid, signal.SIGINT)
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=5)

    def tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


class _Envelope(msgspec.Struct):
    jobs: list[msgspec.Raw] | None = None


_envelope = msgspec.json.Decoder(_Envelope)


@dataclass
class BenchEnv:
    """Enter to create the vhost, the Redis and the accounts; exit removes all of it."""

    amqp_base: str = os.environ.get("RSMS_BENCH_AMQP_URL", "amqp://guest:guest@localhost:5672/")
    given_redis_url: str = os.environ.get("RSMS_BENCH_REDIS_URL", "")
    vhost: str = field(default_factory=lambda: f"rsms-bench-ingest-{uuid.uuid4().hex[:8]}")
    tmp: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="rsms-bench-ingest-")))
    amqp_url: str = ""
    redis_url: str = ""
    api_key: str = ""
    _redis: redis.Redis | None = None
    _redis_server: RedisServer | None = None
    _vhost_created: bool = False

    def __enter__(self) -> BenchEnv:
        try:
            rabbitmqctl("add_vhost", self.vhost)
            self._vhost_created = True
            user = urlsplit(self.amqp_base).username or "guest"
            rabbitmqctl("set_permissions", "-p", self.vhost, user, ".*", ".*", ".*")
            parts = urlsplit(self.amqp_base)
            self.amqp_url = urlunsplit((parts.scheme, parts.netloc, "/" + self.vhost, "", ""))
            self._open_redis()
            self.api_key = self._write_accounts()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._redis is not None:
            self._redis.close()
        if self._redis_server is not None:
            self._redis_server.stop()
        if self._vhost_created:
            rabbitmqctl("delete_vhost", self.vhost)
        shutil.rmtree(self.tmp, ignore_errors=True)

    @property
    def accounts_file(self) -> Path:
        return self.tmp / "accounts.toml"

    def _open_redis(self) -> None:
        if self.given_redis_url:
            self.redis_url = self.given_redis_url
        else:
            self._redis_server = RedisServer(free_port(), self.tmp / "redis", appendonly=False).start()
            self.redis_url = self._redis_server.url
        self._redis = redis.Redis.from_url(self.redis_url)
        self.reset_redis()

    def reset_redis(self) -> None:
        """Empty the bench's own Redis: the limiter's logs start from zero."""
        assert self._redis is not None
        self._redis.flushdb()

    def _write_accounts(self) -> str:
        with store.editing(self.accounts_file) as data:
            store.create_project(data, "bench", "Bench")
            _, key = store.issue_key(data, "bench", "live")
            store.set_tag(data, "bench", TAG, "RSMS")
            store.set_limits(data, "bench", RAISED_LIMITS)
        return key

    @property
    def redis_pid(self) -> int | None:
        """The bench's own redis-server's process id (None when given a Redis to use)."""
        return self._redis_server.pid if self._redis_server is not None else None

    def gateway(self, port: int, workers: int, root: Path = ROOT) -> Server:
        """`rsms ingest`, exactly as an operator starts it, configured by environment; from
        another checkout `root` (with its own .venv) to compare two versions in one env."""
        env = {
            **os.environ,
            "RSMS_AMQP_URL": self.amqp_url,
            "RSMS_REDIS_URL": self.redis_url,
            "RSMS_ACCOUNTS_FILE": str(self.accounts_file),
            "RSMS_INGEST_HOST": "127.0.0.1",
            "RSMS_INGEST_PORT": str(port),
            "RSMS_INGEST_OPS_PORT": str(free_port()),  # metrics: not on the API port any more
            "RSMS_INGEST_WORKERS": str(workers),
        }
        python = sys.executable if root == ROOT else str(root / ".venv" / "bin" / "python")
        command = [python, "-m", "cli.main", "ingest"]
        return Server("gateway", port, command, env, self.tmp / "gateway.log", cwd=root)

    def baseline(self, port: int, workers: int) -> Server:
        command = [sys.executable, "-m", "bench.ingest_baseline", "--port", str(port), "--workers", str(workers)]
        return Server("baseline", port, command, dict(os.environ), self.tmp / "baseline.log")

    def queued_jobs(self) -> int:
        """Jobs in the dispatch queue: what the gateway really queued."""
        return self.take_queued()[1]

    def take_queued(self) -> tuple[int, int]:
        """Takes every message off the dispatch queue (and purges the ledger's): the messages
        and the jobs in them (group commit puts several jobs in one `SmsJobBatch`)."""
        return asyncio.run(self._take_queued())

    async def _take_queued(self) -> tuple[int, int]:
        connection = await aio_pika.connect(self.amqp_url)
        try:
            channel = await connection.channel()
            await channel.set_qos(prefetch_count=1000)
            dispatch, *others = ACCEPTED_QUEUES
            queue = await channel.declare_queue(dispatch, passive=True)
            expected = queue.declaration_result.message_count or 0
            messages = jobs = 0
            if expected:
                done = asyncio.Event()

                async def count(message: aio_pika.abc.AbstractIncomingMessage) -> None:
                    nonlocal messages, jobs
                    envelope = _envelope.decode(message.body)
                    messages += 1
                    jobs += len(envelope.jobs) if envelope.jobs is not None else 1
                    if messages >= expected:
                        done.set()

                tag = await queue.consume(count, no_ack=True)
                await asyncio.wait_for(done.wait(), timeout=120)
                await queue.cancel(tag)
            for name in others:
                await (await channel.declare_queue(name, passive=True)).purge()
            return messages, jobs
        finally:
            await connection.close()

    def purge_queues(self) -> None:
        """Nothing consumes the accepted queues here; purge them so RabbitMQ's memory stays flat."""
        asyncio.run(self._queues(purge=True))

    def wait_topology(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                asyncio.run(self._queues(purge=False))
                return
            except aio_pika.exceptions.ChannelClosed:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)

    async def _queues(self, *, purge: bool) -> list[int]:
        connection = await aio_pika.connect(self.amqp_url)
        try:
            counts = []
            for name in ACCEPTED_QUEUES:
                channel = await connection.channel()
                queue = await channel.declare_queue(name, passive=True)
                counts.append(queue.declaration_result.message_count or 0)
                if purge:
                    await queue.purge()
            return counts
        finally:
            await connection.close()
