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
        [--roots . ../main]             # compare checkouts: one dispatcher each, rounds interleaved
        [--profile DIR]                 # py-spy raw profiles of each dispatcher, in DIR/w<window>r<recipients>/<code>
                                        # (bench.profile_summary DIR/w100r1/<code>)

Besides recipients/s it reports the dispatcher's CPU-ms per recipient (its user+system time
over the round, from /proc) and the Redis memory each recipient left behind (used_memory
after the round minus before, nothing expiring within a round).

Stops by itself: a fixed number of rounds, each with a deadline.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import aio_pika
import httpx
import redis.asyncio as aioredis
import smpp34

from bench.dispatcher_e2e import ROOT, free_port, job_body, publish_all, rabbitmqctl
from shared.topology import ACCEPTED_EXCHANGE, LEDGER_ACCEPTED_QUEUE, LEDGER_OUTCOMES_QUEUE, LEDGER_RECEIPTS_QUEUE
from tests.support.redis_server import RedisServer

ROUND_DEADLINE_SECONDS = 120.0
SYSTEM_ID = "rsms"


@dataclass
class Row:
    window: int
    root: str
    scenario: str
    recipients_per_job: int
    jobs: int
    gateway: list[float] = field(default_factory=list)
    """Recipients per second, one per round."""
    cpu_ms: list[float] = field(default_factory=list)
    """The dispatcher's CPU-ms per recipient, one per round."""
    redis_bytes: list[float] = field(default_factory=list)
    """Redis memory per recipient left after the round, one per round."""
    baseline: list[float] = field(default_factory=list)


@dataclass
class Dispatcher:
    """One dispatcher under test: a checkout of the code, its own vhost and HTTP port."""

    label: str
    root: Path
    amqp_url: str
    vhost: str
    port: int
    process: subprocess.Popen[bytes] | None = None
    profiler: subprocess.Popen[bytes] | None = None


def cpu_seconds(pid: int) -> float:
    """User plus system time of a process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def settled_cpu(pid: int) -> float:
    """The process's CPU time once it has gone idle: the outcomes and acks after the last
    submit are part of the work (at most a few seconds)."""
    last = cpu_seconds(pid)
    for _ in range(50):
        await asyncio.sleep(0.2)
        now = cpu_seconds(pid)
        if now == last:
            return now
        last = now
    return last


async def accepted(sim: httpx.AsyncClient) -> int:
    return int((await sim.get("/admin/stats")).json().get("smpp_accepted", 0))


async def redis_memory(redis: aioredis.Redis) -> int:
    return int((await redis.info("memory"))["used_memory"])


async def gateway_round(
    target: Dispatcher, sim: httpx.AsyncClient, redis: aioredis.Redis, bodies: list[bytes], recipients: int
) -> tuple[float, float, float]:
    """(seconds, dispatcher CPU-ms per recipient, Redis bytes per recipient) of one round."""
    assert target.process is not None
    await sim.post("/admin/reset")
    connection = await aio_pika.connect(target.amqp_url)
    try:
        channel = await connection.channel(publisher_confirms=True)
        exchange = await channel.get_exchange(ACCEPTED_EXCHANGE.name)
        memory_before = await redis_memory(redis)
        cpu_before = cpu_seconds(target.process.pid)
        started = time.perf_counter()
        await publish_all(channel, exchange, "", bodies)
        while (seen := await accepted(sim)) < recipients:
            if time.perf_counter() - started > ROUND_DEADLINE_SECONDS:
                raise TimeoutError(f"the SMSC accepted {seen} of {recipients} recipients")
            await asyncio.sleep(0.01)
        elapsed = time.perf_counter() - started
        cpu = await settled_cpu(target.process.pid) - cpu_before
        memory = await redis_memory(redis) - memory_before
        # A fault-free round submits nobody twice; if it did, the figure would be a lie.
        destinations = [m["destination"] for m in (await sim.get("/admin/smpp/messages")).json()]
        if len(destinations) != len(set(destinations)):
            raise RuntimeError(f"the SMSC saw {len(destinations) - len(set(destinations))} second submit(s)")
        # Nothing consumes these here; keep the broker from growing across rounds.
        for queue in (LEDGER_ACCEPTED_QUEUE.name, LEDGER_OUTCOMES_QUEUE.name, LEDGER_RECEIPTS_QUEUE.name):
            await (await channel.get_queue(queue)).purge()
        return elapsed, cpu * 1000 / recipients, memory / recipients
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
    args: argparse.Namespace, targets: list[Dispatcher], ports: dict[str, int], redis_url: str, window: int, offset: int
) -> list[Row]:
    sim_url = f"http://127.0.0.1:{ports['sim']}"
    await wait_until_answers(f"{sim_url}/admin/stats", "the simulator")
    for target in targets:
        await wait_until_answers(f"http://127.0.0.1:{target.port}/health/ready", f"the dispatcher of {target.label}")
    smpp_port = ports["smpp"]
    redis = aioredis.Redis.from_url(redis_url)
    async with httpx.AsyncClient(base_url=sim_url, timeout=10, headers={"Authorization": "Bearer sim-token"}) as sim:
        # Warm-up: the dispatcher binds on its first send.
        for i, target in enumerate(targets):
            await gateway_round(target, sim, redis, [job_body(1, 9_000_000 + window * 10 + i)], 1)
        rows = []
        for scenario, per_job, jobs in (
            ("1000-recipient jobs", 1000, args.big_jobs),
            ("1-recipient jobs", 1, args.small_jobs),
        ):
            if not jobs:
                continue
            if args.profile:
                # A profile per checkout, window and scenario: their shares differ.
                for target in targets:
                    target.profiler = start_profiler(args.profile / f"w{window}r{per_job}" / target.label, target)
            scenario_rows = [Row(window, t.label, scenario, per_job, jobs) for t in targets]
            for round_number in range(args.rounds):
                # Interleaved, and the order turned round every round: a noisy neighbour
                # weighs on both checkouts alike.
                order = list(zip(targets, scenario_rows, strict=True))
                if round_number % 2:
                    order.reverse()
                for target, row in order:
                    bodies = [job_body(per_job, offset + i * per_job) for i in range(jobs)]
                    offset += jobs * per_job
                    total = jobs * per_job
                    seconds, cpu_ms, redis_bytes = await gateway_round(target, sim, redis, bodies, total)
                    row.gateway.append(total / seconds)
                    row.cpu_ms.append(cpu_ms)
                    row.redis_bytes.append(redis_bytes)
                if args.raw_baseline:
                    await sim.post("/admin/reset")
                    raw = jobs * per_job / await baseline_round(smpp_port, window, jobs * per_job)
                    for row in scenario_rows:
                        row.baseline.append(raw)
            rows += scenario_rows
            for target in targets:
                stop(target.profiler, signal.SIGINT)  # py-spy writes its file when interrupted
                target.profiler = None
        await redis.aclose()
        return rows


def start_in(root: Path, module: str, env: dict[str, str], quiet: bool) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", module],
        cwd=root,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL if quiet else sys.stderr,
    )


def start_profiler(directory: Path, target: Dispatcher) -> subprocess.Popen[bytes]:
    assert target.process is not None
    pid = target.process.pid
    directory.mkdir(parents=True, exist_ok=True)
    py_spy = Path(sys.executable).with_name("py-spy")
    out = directory / f"{target.label}-dispatcher-{pid}.txt"
    return subprocess.Popen(
        [str(py_spy), "record", "-f", "raw", "-r", "200", "--nonblocking", "-o", str(out), "--pid", str(pid)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def stop(process: subprocess.Popen[bytes] | None, sig: int = signal.SIGTERM) -> None:
    if process is None or process.poll() is not None:
        return
    process.send_signal(sig)
    try:
        process.wait(30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def label_of(root: Path) -> str:
    # bench.profile_summary reads `<label>-<service>-<pid>.txt`: no dash in a label.
    return re.sub(r"[^A-Za-z0-9]", "", root.name) or "root"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--windows", type=int, nargs="+", default=[10, 100])
    parser.add_argument("--big-jobs", type=int, default=2, help="1000-recipient jobs per round")
    parser.add_argument("--small-jobs", type=int, default=300, help="1-recipient jobs per round")
    parser.add_argument(
        "--roots", type=Path, nargs="+", default=[ROOT], help="checkouts whose dispatchers are compared (interleaved)"
    )
    parser.add_argument("--profile", type=Path, help="write py-spy raw profiles of the dispatchers here")
    parser.add_argument("--no-raw-baseline", dest="raw_baseline", action="store_false", help="skip smpp34's own client")
    parser.add_argument(
        "--set", action="append", default=[], metavar="RSMS_X=VALUE", help="extra setting for the dispatcher"
    )
    args = parser.parse_args()

    base = os.environ.get("RSMS_AMQP_URL", "amqp://guest:guest@localhost:5672/")
    parts = urlsplit(base)
    labels = [label_of(root.resolve()) for root in args.roots]
    if len(set(labels)) != len(labels):
        labels = [f"{label}{i}" for i, label in enumerate(labels)]
    targets: list[Dispatcher] = []
    for label, root in zip(labels, args.roots, strict=True):
        vhost = f"rsms-bench-{uuid.uuid4().hex[:8]}"
        rabbitmqctl("add_vhost", vhost)
        rabbitmqctl("set_permissions", "-p", vhost, parts.username or "guest", ".*", ".*", ".*")
        amqp_url = urlunsplit((parts.scheme, parts.netloc, "/" + vhost, "", ""))
        targets.append(Dispatcher(label, root.resolve(), amqp_url, vhost, 0))
    sim_port, smpp_port = free_port(), free_port()
    redis_dir = Path(tempfile.mkdtemp(prefix="rsms-bench-redis-"))
    redis_server = RedisServer(free_port(), redis_dir, appendonly=False).start()
    env = {k: v for k, v in os.environ.items() if not k.startswith("RSMS_")}
    env.update(
        {
            "RSMS_AMQP_URL": targets[0].amqp_url,
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
    simulator = start_in(ROOT, "services.provider_sim", env, quiet=True)
    rows: list[Row] = []
    try:
        for index, window in enumerate(args.windows):
            ports = {"sim": sim_port, "smpp": smpp_port}
            try:
                for target in targets:
                    target.port = free_port()
                    target.process = start_in(
                        target.root,
                        "services.dispatcher",
                        {
                            **env,
                            "RSMS_AMQP_URL": target.amqp_url,
                            "RSMS_SMPP_WINDOW": str(window),
                            "RSMS_DISPATCHER_HTTP_PORT": str(target.port),
                        },
                        quiet=False,
                    )
                offset = (index + 1) * 10_000_000
                rows += asyncio.run(measure_window(args, targets, ports, redis_server.url, window, offset))
            finally:
                for target in targets:
                    # py-spy writes its file when it is interrupted.
                    stop(target.profiler, signal.SIGINT)
                    target.profiler = None
                    stop(target.process)
                    target.process = None
    finally:
        stop(simulator)
        for target in targets:
            rabbitmqctl("delete_vhost", target.vhost)
        redis_server.stop()
        shutil.rmtree(redis_dir, ignore_errors=True)
    report(args, rows)


def report(args: argparse.Namespace, rows: list[Row]) -> None:
    print(
        f"\nSMPP end-to-end: {args.rounds} rounds each, 1 dispatcher, 1 bind, medians; load average {os.getloadavg()}\n"
    )
    header = (
        f"{'window':>6}  {'code':<16} {'scenario':<20} {'jobs/round':>10} {'gateway rcpt/s':>15} "
        f"{'CPU-ms/rcpt':>11} {'Redis B/rcpt':>12} {'raw smpp34 submit/s':>20}"
    )
    print(header)
    print("-" * len(header))
    for row in rows:
        g = statistics.median(row.gateway)
        b = f"{statistics.median(row.baseline):>20,.0f}" if row.baseline else f"{'-':>20}"
        print(
            f"{row.window:>6}  {row.root:<16} {row.scenario:<20} {row.jobs:>10,} {g:>15,.0f} "
            f"{statistics.median(row.cpu_ms):>11.3f} {statistics.median(row.redis_bytes):>12,.0f} {b}"
        )
    print("\nper round (recipients/s | dispatcher CPU-ms per recipient):")
    for row in rows:
        gateway = ", ".join(f"{v:,.0f}" for v in row.gateway)
        cpu = ", ".join(f"{v:.3f}" for v in row.cpu_ms)
        print(f"  window {row.window}, {row.root}, {row.scenario}: {gateway} | {cpu}")


if __name__ == "__main__":
    main()
