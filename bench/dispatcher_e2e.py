"""End-to-end dispatcher throughput: accepted job -> provider-received recipient.

Starts the provider simulator and a dispatcher as subprocesses on a throw-away RabbitMQ
vhost, publishes jobs to `rsms.accepted` the way ingest does (persistent, publisher
confirms), and clocks from the first publish until the simulator has received every
recipient. The baseline publishes the same bodies to a plain quorum queue and consumes
and acks them with raw aio-pika in this process: what the broker alone costs.

    .venv/bin/python -m bench.dispatcher_e2e [--rounds 3] [--big-jobs 60] [--small-jobs 3000]
        [--set RSMS_DISPATCHER_PREFETCH=128 ...]   # try a setting without editing code

Stops by itself: a fixed number of rounds, each with a deadline.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import aio_pika
import httpx

from shared.contracts import SmsJob
from shared.topology import ACCEPTED_EXCHANGE, LEDGER_ACCEPTED_QUEUE, LEDGER_OUTCOMES_QUEUE
from tests.support.redis_server import RedisServer

ROOT = Path(__file__).resolve().parents[1]
ROUND_DEADLINE_SECONDS = 120.0


@dataclass
class Scenario:
    name: str
    jobs: int
    recipients_per_job: int
    target: str


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def job_body(recipients: int, offset: int) -> bytes:
    numbers = [f"+47{40_000_000 + offset + i}" for i in range(recipients)]
    job = SmsJob(
        message_id=uuid.uuid4(),
        project="bench",
        key_id="bench-key",
        tag="BENCH",
        sender="RSMS",
        recipients=numbers,
        message="Benchmark message: nothing personal in here.",
        encoding="GSM-7",
        segments=1,
        prices={"NO": Decimal("0.67")},
        default_price=Decimal("0.80"),
        currency="NOK",
        estimated_cost=Decimal("0.67") * recipients,
        test=False,
        store_body=False,
        accepted_at=datetime.now(UTC),
    )
    return job.model_dump_json().encode()


async def publish_all(
    channel: aio_pika.abc.AbstractChannel,
    exchange: aio_pika.abc.AbstractExchange,
    routing_key: str,
    bodies: list[bytes],
) -> None:
    """Publishes with confirms, many in flight at once (as many ingest requests would)."""
    window = 256
    for start in range(0, len(bodies), window):
        await asyncio.gather(
            *(
                exchange.publish(
                    aio_pika.Message(
                        b,
                        content_type="application/json",
                        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                    ),
                    routing_key=routing_key,
                )
                for b in bodies[start : start + window]
            )
        )


async def wait_for(sim: httpx.AsyncClient, delivered: int, deadline: float) -> float:
    while time.perf_counter() < deadline:
        stats = (await sim.get("/admin/stats")).json()
        if stats.get("delivered", 0) >= delivered:
            return time.perf_counter()
        await asyncio.sleep(0.01)
    raise TimeoutError(f"simulator saw {stats.get('delivered', 0)} of {delivered} recipients")


async def run_dispatcher_round(amqp_url: str, sim: httpx.AsyncClient, bodies: list[bytes], recipients: int) -> float:
    await sim.post("/admin/reset")
    connection = await aio_pika.connect(amqp_url)
    try:
        channel = await connection.channel(publisher_confirms=True)
        exchange = await channel.get_exchange(ACCEPTED_EXCHANGE.name)
        started = time.perf_counter()
        await publish_all(channel, exchange, "", bodies)
        finished = await wait_for(sim, recipients, started + ROUND_DEADLINE_SECONDS)
        # A fault-free round sends nobody twice; if it did, the figure would be a lie.
        duplicates = (await sim.get("/admin/stats")).json().get("duplicate_attempts", 0)
        if duplicates:
            raise RuntimeError(f"the simulator saw {duplicates} duplicate send(s)")
        # Nothing consumes these here; keep the broker from growing across rounds.
        for queue in (LEDGER_ACCEPTED_QUEUE.name, LEDGER_OUTCOMES_QUEUE.name):
            await (await channel.get_queue(queue)).purge()
        return finished - started
    finally:
        await connection.close()


async def run_baseline_round(amqp_url: str, bodies: list[bytes]) -> float:
    connection = await aio_pika.connect(amqp_url)
    try:
        channel = await connection.channel(publisher_confirms=True)
        consumer_channel = await connection.channel()
        await consumer_channel.set_qos(prefetch_count=64)
        queue = await channel.declare_queue("bench.baseline", durable=True, arguments={"x-queue-type": "quorum"})
        consumer_queue = await consumer_channel.get_queue(queue.name)
        done = asyncio.get_running_loop().create_future()
        seen = 0

        async def on_message(message: aio_pika.abc.AbstractIncomingMessage) -> None:
            nonlocal seen
            await message.ack()
            seen += 1
            if seen == len(bodies) and not done.done():
                done.set_result(time.perf_counter())

        tag = await consumer_queue.consume(on_message)
        started = time.perf_counter()
        await publish_all(channel, channel.default_exchange, queue.name, bodies)
        finished = await asyncio.wait_for(done, ROUND_DEADLINE_SECONDS)
        await consumer_queue.cancel(tag)
        return float(finished - started)
    finally:
        await connection.close()


def rabbitmqctl(*args: str) -> None:
    subprocess.run(["rabbitmqctl", "-q", *args], check=True, capture_output=True)


async def measure(args: argparse.Namespace, amqp_url: str, sim_port: int) -> list[Row]:
    async with httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{sim_port}", timeout=10, headers={"Authorization": "Bearer sim-token"}
    ) as sim:
        for _ in range(200):
            try:
                await sim.get("/admin/stats")
                break
            except httpx.TransportError:
                await asyncio.sleep(0.1)
        await asyncio.sleep(2.0)  # the dispatchers' consumers

        scenarios = [
            Scenario("1000-recipient jobs", args.big_jobs, 1000, ">= 20,000 recipients/s"),
            Scenario("1-recipient jobs", args.small_jobs, 1, ">= 1,000 jobs/s"),
        ]
        rows = []
        offset = 0
        for scenario in scenarios:
            gateway, baseline = [], []
            for _ in range(args.rounds):
                per_job = scenario.recipients_per_job
                bodies = [job_body(per_job, offset + i * per_job) for i in range(scenario.jobs)]
                offset += scenario.jobs * per_job
                total = scenario.jobs * per_job
                gateway.append(total / await run_dispatcher_round(amqp_url, sim, bodies, total))
                baseline.append(total / await run_baseline_round(amqp_url, bodies))
            rows.append(Row(scenario, gateway, baseline))
        return rows


@dataclass
class Row:
    scenario: Scenario
    gateway: list[float]
    """Recipients per second, one per round."""
    baseline: list[float]


def start(module: str, env: dict[str, str], quiet: bool) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", module],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL if quiet else sys.stderr,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--big-jobs", type=int, default=60, help="1000-recipient jobs per round")
    parser.add_argument("--small-jobs", type=int, default=3000, help="1-recipient jobs per round")
    parser.add_argument("--dispatchers", type=int, default=1)
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="RSMS_X=VALUE",
        help="extra setting for the dispatchers and the simulator (repeatable)",
    )
    args = parser.parse_args()

    base = os.environ.get("RSMS_AMQP_URL", "amqp://guest:guest@localhost:5672/")
    parts = urlsplit(base)
    vhost = f"rsms-bench-{uuid.uuid4().hex[:8]}"
    rabbitmqctl("add_vhost", vhost)
    rabbitmqctl("set_permissions", "-p", vhost, parts.username or "guest", ".*", ".*", ".*")
    amqp_url = urlunsplit((parts.scheme, parts.netloc, "/" + vhost, "", ""))
    sim_port = free_port()
    # Send markers, the blocklist and the provider state go to a Redis of the bench's own:
    # never into a Redis another gateway (or anybody) uses.
    redis_dir = Path(tempfile.mkdtemp(prefix="rsms-bench-redis-"))
    redis_server = RedisServer(free_port(), redis_dir, appendonly=False).start()
    env = {k: v for k, v in os.environ.items() if not k.startswith("RSMS_")}
    env.update(
        {
            "RSMS_AMQP_URL": amqp_url,
            "RSMS_REDIS_URL": redis_server.url,
            "RSMS_PROVIDER_SIM_PORT": str(sim_port),
            "RSMS_PROVIDER_URL": f"http://127.0.0.1:{sim_port}",
            "RSMS_DISPATCHER_MARKER_TTL_SECONDS": "600",
            "RSMS_LOG_LEVEL": "WARNING",
        }
    )
    for item in args.set:
        key, _, value = item.partition("=")
        env[key] = value
    processes = [start("services.provider_sim", env, quiet=True)]
    try:
        for _ in range(args.dispatchers):
            port_env = {**env, "RSMS_DISPATCHER_HTTP_PORT": str(free_port())}
            processes.append(start("services.dispatcher", port_env, quiet=False))
        rows = asyncio.run(measure(args, amqp_url, sim_port))
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
        rabbitmqctl("delete_vhost", vhost)
        redis_server.stop()
        shutil.rmtree(redis_dir, ignore_errors=True)
    report(args, rows)


def report(args: argparse.Namespace, rows: list[Row]) -> None:
    print(f"\ndispatcher end-to-end: {args.rounds} rounds each, {args.dispatchers} dispatcher(s), medians\n")
    header = (
        f"{'scenario':<22} {'jobs/round':>10} {'gateway rcpt/s':>15} {'gateway jobs/s':>15} "
        f"{'raw aio-pika msg/s':>19} {'gateway/raw':>11}  target"
    )
    print(header)
    print("-" * len(header))
    for row in rows:
        per_job = row.scenario.recipients_per_job
        g, b = statistics.median(row.gateway), statistics.median(row.baseline)
        print(
            f"{row.scenario.name:<22} {row.scenario.jobs:>10,} {g:>15,.0f} {g / per_job:>15,.0f} "
            f"{b / per_job:>19,.0f} {g / b:>11.2f}  {row.scenario.target}"
        )
    print("\nper round, recipients/s (gateway | raw aio-pika):")
    for row in rows:
        gateway = ", ".join(f"{v:,.0f}" for v in row.gateway)
        raw = ", ".join(f"{v:,.0f}" for v in row.baseline)
        print(f"  {row.scenario.name}: {gateway} | {raw}")


if __name__ == "__main__":
    main()
