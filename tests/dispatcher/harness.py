"""Real processes and real queues for the dispatcher's integration tests: the provider
simulator and dispatchers run as subprocesses, jobs are published to RabbitMQ the way
ingest publishes them, outcomes and dead letters are read back off the broker."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar

import aio_pika
import httpx
from faststream.rabbit import RabbitBroker

from shared.contracts import SmsJob
from shared.topology import ACCEPTED_EXCHANGE, declare_topology

ROOT = Path(__file__).resolve().parents[2]
T = TypeVar("T")


async def eventually(
    probe: Callable[[], Awaitable[T]],
    until: Callable[[T], bool],
    within: float = 30.0,
    what: str = "",
) -> T:
    """Polls `probe` until `until(value)` holds; fails with the last value after `within` s."""
    deadline = asyncio.get_running_loop().time() + within
    while True:
        value = await probe()
        if until(value):
            return value
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"gave up waiting for {what or 'condition'}; last value: {value!r}")
        await asyncio.sleep(0.05)


def numbers(count: int, start: int = 0) -> list[str]:
    return [f"+4790{start + i:06d}" for i in range(count)]


def make_job(recipients: list[str], *, test: bool = False, message: str = "Hello from the tests") -> SmsJob:
    return SmsJob(
        message_id=uuid.uuid4(),
        project="proj",
        key_id="key-1",
        tag="R-TEST",
        sender="RSMS",
        recipients=recipients,
        message=message,
        encoding="GSM-7",
        segments=1,
        prices={"NO": Decimal("0.67")},
        default_price=Decimal("0.80"),
        currency="NOK",
        estimated_cost=Decimal("0.67") * len(recipients),
        test=test,
        store_body=False,
        accepted_at=datetime.now(UTC),
    )


async def declare(amqp_url: str) -> None:
    broker = RabbitBroker(amqp_url)
    await broker.connect()
    try:
        await declare_topology(broker)
    finally:
        await broker.stop()


async def publish(amqp_url: str, *bodies: SmsJob | bytes) -> None:
    """Publishes to `rsms.accepted` with confirms and persistence, as ingest does."""
    connection = await aio_pika.connect(amqp_url)
    try:
        channel = await connection.channel(publisher_confirms=True)
        exchange = await channel.get_exchange(ACCEPTED_EXCHANGE.name)
        for body in bodies:
            raw = body.model_dump_json().encode() if isinstance(body, SmsJob) else body
            await exchange.publish(
                aio_pika.Message(
                    raw,
                    content_type="application/json",
                    delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                ),
                routing_key="",
            )
    finally:
        await connection.close()


async def peek(amqp_url: str, queue: str) -> list[dict[str, Any]]:
    """Every message on `queue`, left where it is: each put back as a confirmed copy, never
    requeued, since a requeue counts against a quorum queue's delivery limit and polling
    would dead-letter what it looks at (cli/queue_moves.py)."""
    import json

    from cli.queue_moves import move_to, take

    connection = await aio_pika.connect(amqp_url)
    try:
        channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
        q = await channel.get_queue(queue, ensure=True)
        found = []
        for message in await take(channel, q):
            await move_to(channel, message, queue)
            found.append(json.loads(message.body))
        return found
    finally:
        await connection.close()


async def peek_events(amqp_url: str, queue: str) -> list[dict[str, Any]]:
    """The outcome events on `queue` (`peek`), whatever their grouping on the wire: a
    message is an OutcomeEvent, or an OutcomeBatch of the events that finished together."""
    return [event for message in await peek(amqp_url, queue) for event in message.get("events", [message])]


def _python_env(extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RSMS_")}
    env.update({"PYTHONUNBUFFERED": "1", **extra})
    return env


class Simulator:
    def __init__(self, port: int, log_path: Path, **settings: str) -> None:
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self._log = log_path.open("ab")
        self._process = subprocess.Popen(
            [sys.executable, "-m", "services.provider_sim"],
            cwd=ROOT,
            env=_python_env({"RSMS_PROVIDER_SIM_PORT": str(port), **settings}),
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        token = settings.get("RSMS_PROVIDER_SIM_TOKEN", "sim-token")
        self._client = httpx.AsyncClient(base_url=self.url, timeout=5.0, headers={"Authorization": f"Bearer {token}"})

    async def started(self) -> Simulator:
        async def answers() -> bool:
            try:
                return (await self._client.get("/admin/stats")).status_code == 200
            except httpx.TransportError:
                return False

        await eventually(answers, bool, within=20, what="the simulator to answer")
        return self

    async def faults(self, **changes: Any) -> dict[str, Any]:
        response = await self._client.post("/admin/faults", json=changes)
        response.raise_for_status()
        return dict(response.json())

    async def stats(self) -> dict[str, int]:
        response = await self._client.get("/admin/stats")
        response.raise_for_status()
        return dict(response.json())

    async def messages(self) -> list[dict[str, Any]]:
        response = await self._client.get("/admin/messages")
        response.raise_for_status()
        return list(response.json())

    async def stop(self) -> None:
        await self._client.aclose()
        if self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        self._log.close()


class Dispatcher:
    def __init__(self, env: dict[str, str], http_port: int, log_path: Path) -> None:
        self.http_port = http_port
        self.log_path = log_path
        self._log = log_path.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "services.dispatcher"],
            cwd=ROOT,
            env=_python_env({**env, "RSMS_DISPATCHER_HTTP_PORT": str(http_port)}),
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    async def ready(self) -> Dispatcher:
        async def answers() -> int:
            if self.process.poll() is not None:
                raise AssertionError(f"dispatcher exited with {self.process.returncode}: {self.output()}")
            try:
                async with httpx.AsyncClient(timeout=2.0) as client:
                    return (await client.get(f"http://127.0.0.1:{self.http_port}/health/ready")).status_code
            except httpx.TransportError:
                return 0

        await eventually(answers, lambda status: status == 200, within=30, what="the dispatcher to be ready")
        return self

    async def metrics(self) -> str:
        async with httpx.AsyncClient(timeout=2.0) as client:
            return (await client.get(f"http://127.0.0.1:{self.http_port}/metrics")).text

    def output(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")[-4000:]

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()

    async def terminate(self, grace: float = 30.0) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        for _ in range(int(grace / 0.05)):
            if self.process.poll() is not None:
                break
            await asyncio.sleep(0.05)
        else:
            self.process.kill()
            self.process.wait()
        return int(self.process.returncode)

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self._log.close()
