"""End-to-end throughput through SMPP: accepted job -> submit_sm accepted at the SMSC.

Starts the provider simulator with its SMPP face (the sink: it accepts every submit_sm at
once and sends a delivery receipt per part, as a real SMSC would) and, per window size, a
dispatcher with `RSMS_PROVIDER_KIND=smpp` and `RSMS_SMPP_WINDOW` set, on a throw-away
RabbitMQ vhost and a Redis of its own. Jobs are published to `rsms.accepted` the way ingest
publishes them; the clock runs from the first publish until the SMSC has accepted every
recipient. The baseline is `smpp34`'s own client submitting as many submit_sm at the same
window straight to the same SMSC: what the SMSC, the wire and the window alone allow.

    .venv/bin/python -m bench.smpp_e2e [--rounds 2] [--windows 10 100] [--big-jobs 2] [--small-jobs 300]
        [--set RSMS_SMPP_BINDS=2 ...]   # try a setting without editing code

Stops by itself: a fixed number of rounds, each with a deadline.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import subprocess
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import aio_pika
import httpx
import smpp34

from bench.dispatcher_e2e import free_port, job_body, publish_all, rabbitmqctl, start
from shared.topology import ACCEPTED_EXCHANGE, LEDGER_ACCEPTED_QUEUE, LEDGER_OUTCOMES_QUEUE, LEDGER_RECEIPTS_QUEUE
from tests.support.redis_server import RedisServer

ROUND_DEADLINE_SECONDS = 120.0
SYSTEM_ID = "rsms"


@dataclass
class Row:
    window: int
    scenario: str
    recipients_per_job: int
    jobs: int
    gateway: list[float]
    """Recipients per second, one per round."""
    baseline: list[float]


async def accepted(sim: httpx.AsyncClient) -> int:
    return int((await sim.get("/admin/stats")).json().get("smpp_accepted", 0))


async def gateway_round(amqp_url: str, sim: httpx.AsyncClient, bodies: list[bytes], recipients: int) -> float:
    await sim.post("/admin/reset")
    connection = await aio_pika.connect(amqp_url)
    try:
        channel = await connection.channel(publisher_confirms=True)
        exchange = await channel.get_exchange(ACCEPTED_EXCHANGE.name)
        started = time.perf_counter()
        await publish_all(channel, exchange, "", bodies)
        while (seen := await accepted(sim)) < recipients:
            if time.perf_counter() - started > ROUND_DEADLINE_SECONDS:
                raise TimeoutError(f"the SMSC accepted {seen} of {recipients} recipients")
            await asyncio.sleep(0.01)
        elapsed = time.perf_counter() - started
        # A fault-free round submits nobody twice; if it did, the figure would be a lie.
        destinations = [m["destination"] for m in (await sim.get("/admin/smpp/messages")).json()]
        if len(destinations) != len(set(destinations)):
            raise RuntimeError(f"the SMSC saw {len(destinations) - len(set(destinations))} second submit(s)")
        # Nothing consumes these here; keep the broker from growing across rounds.
        for queue in (LEDGER_ACCEPTED_QUEUE.name, LEDGER_OUTCOMES_QUEUE.name, LEDGER_RECEIPTS_QUEUE.name):
            await (await channel.get_queue(queue)).purge()
        return elapsed
    finally:
        await connection.close()


async def baseline_round(smpp_port: int, window: int, count: int) -> float:
    """`smpp34`'s client, `window` submit_sm outstanding, no receipts asked for."""
    client = smpp34.Client("127.0.0.1", smpp_port, SYSTEM_ID, "rsms", bind_type="TRX", window_size=window)
    smsc = await client.connect()
    slots = asyncio.Semaphore(window)

    async def one(i: int) -> None:
        async with slots:
            answer = await smsc.submit_sm(f"4741{i:06d}", b"Benchmark message", source_addr="RSMS")
            if not answer.is_success:
                raise RuntimeError(f"baseline submit refused: 0x{answer.command_status:08X}")

    try:
        started = time.perf_counter()
        await asyncio.gather(*(one(i) for i in range(count)))
        return time.perf_counter() - started
    finally:
        await smsc.unbind()
        await client.stop()


async def wait_until_answers(url: str, what: str) -> None:
    async with httpx.AsyncClient(timeout=2, headers={"Authorization": "Bearer sim-token"}) as client:
        for _ in range(600):
            try:
                if (await client.get(url)).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.1)
    raise TimeoutError(f"{what} did not become ready")


async def measure_window(
    args: argparse.Namespace, amqp_url: str, ports: dict[str, int], window: int, offset: int
) -> list[Row]:
    sim_url = f"http://127.0.0.1:{ports['sim']}"
    await wait_until_answers(f"{sim_url}/admin/stats", "the simulator")
    await wait_until_answers(f"http://127.0.0.1:{ports['dispatcher']}/health/ready", "the dispatcher")
    smpp_port = ports["smpp"]
    async with httpx.AsyncClient(base_url=sim_url, timeout=10, headers={"Authorization": "Bearer sim-token"}) as sim:
        # Warm-up: the dispatcher binds on its first send.
        await gateway_round(amqp_url, sim, [job_body(1, 9_000_000 + window)], 1)
        rows = []
        for scenario, per_job, jobs in (
            ("1000-recipient jobs", 1000, args.big_jobs),
            ("1-recipient jobs", 1, args.small_jobs),
        ):
            row = Row(window, scenario, per_job, jobs, [], [])
            for _ in range(args.rounds):
                bodies = [job_body(per_job, offset + i * per_job) for i in range(jobs)]
                offset += jobs * per_job
                total = jobs * per_job
                row.gateway.append(total / await gateway_round(amqp_url, sim, bodies, total))
                await sim.post("/admin/reset")
                row.baseline.append(total / await baseline_round(smpp_port, window, total))
            rows.append(row)
        return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--windows", type=int, nargs="+", default=[10, 100])
    parser.add_argument("--big-jobs", type=int, default=2, help="1000-recipient jobs per round")
    parser.add_argument("--small-jobs", type=int, default=300, help="1-recipient jobs per round")
    parser.add_argument(
        "--set", action="append", default=[], metavar="RSMS_X=VALUE", help="extra setting for the dispatcher"
    )
    args = parser.parse_args()

    base = os.environ.get("RSMS_AMQP_URL", "amqp://guest:guest@localhost:5672/")
    parts = urlsplit(base)
    vhost = f"rsms-bench-{uuid.uuid4().hex[:8]}"
    rabbitmqctl("add_vhost", vhost)
    rabbitmqctl("set_permissions", "-p", vhost, parts.username or "guest", ".*", ".*", ".*")
    amqp_url = urlunsplit((parts.scheme, parts.netloc, "/" + vhost, "", ""))
    sim_port, smpp_port = free_port(), free_port()
    redis_dir = Path(tempfile.mkdtemp(prefix="rsms-bench-redis-"))
    redis_server = RedisServer(free_port(), redis_dir, appendonly=False).start()
    env = {k: v for k, v in os.environ.items() if not k.startswith("RSMS_")}
    env.update(
        {
            "RSMS_AMQP_URL": amqp_url,
            "RSMS_REDIS_URL": redis_server.url,
            "RSMS_PROVIDER_SIM_PORT": str(sim_port),
            "RSMS_PROVIDER_SIM_SMPP_PORT": str(smpp_port),
            "RSMS_PROVIDER_SIM_SMPP_SYSTEM_ID": SYSTEM_ID,
            "RSMS_PROVIDER_KIND": "smpp",
            "RSMS_SMPP_HOST": "127.0.0.1",
            "RSMS_SMPP_PORT": str(smpp_port),
            "RSMS_SMPP_SYSTEM_ID": SYSTEM_ID,
            "RSMS_DISPATCHER_MARKER_TTL_SECONDS": "600",
            "RSMS_LOG_LEVEL": "WARNING",
        }
    )
    for item in args.set:
        key, _, value = item.partition("=")
        env[key] = value
    simulator = start("services.provider_sim", env, quiet=True)
    rows: list[Row] = []
    try:
        for index, window in enumerate(args.windows):
            ports = {"sim": sim_port, "smpp": smpp_port, "dispatcher": free_port()}
            dispatcher_env = {
                **env,
                "RSMS_SMPP_WINDOW": str(window),
                "RSMS_DISPATCHER_HTTP_PORT": str(ports["dispatcher"]),
            }
            dispatcher = start("services.dispatcher", dispatcher_env, quiet=False)
            try:
                offset = (index + 1) * 10_000_000
                rows += asyncio.run(measure_window(args, amqp_url, ports, window, offset))
            finally:
                dispatcher.terminate()
                try:
                    dispatcher.wait(30)
                except subprocess.TimeoutExpired:
                    dispatcher.kill()
    finally:
        simulator.terminate()
        try:
            simulator.wait(30)
        except subprocess.TimeoutExpired:
            simulator.kill()
        rabbitmqctl("delete_vhost", vhost)
        redis_server.stop()
        shutil.rmtree(redis_dir, ignore_errors=True)
    report(args, rows)


def report(args: argparse.Namespace, rows: list[Row]) -> None:
    print(f"\nSMPP end-to-end: {args.rounds} rounds each, 1 dispatcher, 1 bind, medians\n")
    header = (
        f"{'window':>6}  {'scenario':<20} {'jobs/round':>10} {'gateway rcpt/s':>15} "
        f"{'raw smpp34 submit/s':>20} {'gateway/raw':>11}"
    )
    print(header)
    print("-" * len(header))
    for row in rows:
        g, b = statistics.median(row.gateway), statistics.median(row.baseline)
        print(f"{row.window:>6}  {row.scenario:<20} {row.jobs:>10,} {g:>15,.0f} {b:>20,.0f} {g / b:>11.2f}")
    print("\nper round, recipients/s (gateway | raw smpp34):")
    for row in rows:
        gateway = ", ".join(f"{v:,.0f}" for v in row.gateway)
        raw = ", ".join(f"{v:,.0f}" for v in row.baseline)
        print(f"  window {row.window}, {row.scenario}: {gateway} | {raw}")


if __name__ == "__main__":
    main()
