"""Where an open-loop stall comes from: latency over time beside what every process did.

    .venv/bin/python -m bench.saturation_trace [--rates 1000 500] [--seconds 20] [--closed 8]
        [--nice "" "ledger=10,webhooks=10"] [--dump ingest] [--profile | --profile-raw] [--rabbit-every 8]
        [--set RSMS_X=VALUE]
    .venv/bin/python -m bench.saturation_trace --summarise DIR/profile-1000 [--window 12 14]

Starts the whole gateway as `bench.saturation` does (`rsms up`, SMPP to the counting sink,
a redis-server of its own, a throw-away vhost). For each rate in `--rates` and each
`--nice` variant (every thread of the named services reniced for that run; '' = none) it
runs the open-loop client in a process of its own (so nothing here can delay it), which
records every request (scheduled, sent, got a connection, answered), and meanwhile:

- every `--sample-every` s the CPU of every process of every service, of the gateway's
  redis-server, the machine's RabbitMQ, the bench's own processes (client, probe, sink,
  py-spy) and the whole machine (busy/idle), and the ledger's threads by name (chDB's
  merges and inserts run as threads of the ledger process);
- a probe process: a persistent publish confirmed by a quorum queue of the gateway's vhost
  and a Redis INCR on the gateway's redis-server, every `--probe-every` s each: whether
  the broker or Redis is slow at the moment the gateway is;
- `--rabbit-every` s (0: never; each call costs RabbitMQ about a second of CPU):
  `rabbitmqctl list_connections` (state `flow`: credit flow throttling a publisher) and the
  vhost's queue depths;
- `--dump SERVICE…`: `py-spy dump` of those processes every `--dump-every` s (saved);
- `--profile`: `py-spy record --idle` as speedscope (samples in order: `--summarise
  --window` shows a stall's seconds); `--profile-raw`: busy samples, folded, for
  `bench.profile_summary`.
- `--closed S`: first S seconds of wrk (closed loop, 64 connections): accepted/s and each
  service's CPU-ms per send at full concurrency, to compare with the open loop's.

It prints one line per second of schedule (requests scheduled in that second: p50/p99/max
latency from the scheduled time, p99 of the wait for a free client connection, how late
the client sent; the probes; every service's CPU in that second), then each service's
CPU-ms per answered send over the run and the ledger's deliveries per accepted send (its
copy of ingest's messages: 1/jobs per broker message; and the dispatcher's outcome
messages). Everything, every request included, is also written as JSON under `--out`.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import json
import math
import multiprocessing
import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.ingest_loadgen import Connection, Target, _install_fast_loop, percentile
from bench.ingest_send import send_body
from bench.peers import CLOCK_TICKS, Sink, cpu_ticks, run_wrk, say
from bench.peers_systems import PEERS_DIR, Rsms, Vhost
from bench.saturation import accepted_now, drain, load_average, processes

RUN_DIR = PEERS_DIR.parent / "saturation" / "trace"


# --- the open-loop client, recording every request ----------------------------------------


async def _open_loop_trace(
    target: Target, rate: float, seconds: float, connections: int, grace: float, start: float
) -> list[tuple[float, float, float, float, int]]:
    """(scheduled, sent, connection got, answered, status) per request, monotonic seconds;
    answered is NaN for a request still unanswered after the grace."""
    clock = time.perf_counter  # CLOCK_MONOTONIC: the same clock as the samplers' in the parent
    request = target.request_bytes()
    idle: asyncio.Queue[Connection] = asyncio.Queue()
    for _ in range(connections):
        idle.put_nowait(await Connection.open(target.host, target.port))
    count = round(rate * seconds)
    records: list[list[float]] = [[start + i / rate, math.nan, math.nan, math.nan, 0] for i in range(count)]

    async def one(record: list[float]) -> None:
        conn = await idle.get()
        record[2] = clock()
        try:
            status = await conn.send(request)
        except (OSError, asyncio.IncompleteReadError, RuntimeError):
            record[3], record[4] = clock(), -1
            idle.put_nowait(await Connection.open(target.host, target.port))
            return
        record[3], record[4] = clock(), status
        idle.put_nowait(conn)

    tasks: set[asyncio.Task[None]] = set()
    for record in records:
        delay = record[0] - clock()
        if delay > 0:
            await asyncio.sleep(delay)
        record[1] = clock()
        task = asyncio.create_task(one(record))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    if tasks:
        _, pending = await asyncio.wait(set(tasks), timeout=grace)
        for task in pending:
            task.cancel()
    while not idle.empty():
        idle.get_nowait().close()
    return [(r[0], r[1], r[2], r[3], int(r[4])) for r in records]


def _client_process(
    args: tuple[Target, float, float, int, float, float],
) -> list[tuple[float, float, float, float, int]]:
    _install_fast_loop()
    return asyncio.run(_open_loop_trace(*args))


# --- probes: what a publish confirm and a Redis round trip take, over time -----------------


async def _probe(amqp_url: str, redis_url: str, every: float, until: float) -> list[tuple[str, float, float]]:
    """(what, sent at, took) for a persistent publish confirmed by a quorum queue of the
    gateway's vhost (a queue of the probe's own, kept short) and a Redis INCR on the
    gateway's redis-server, each every `every` seconds until `until` (monotonic)."""
    import aio_pika
    import redis.asyncio

    found: list[tuple[str, float, float]] = []
    connection = await aio_pika.connect(amqp_url)
    channel = await connection.channel(publisher_confirms=True)
    queue = await channel.declare_queue(
        "bench.trace.probe",
        durable=True,
        arguments={"x-queue-type": "quorum", "x-max-length": 100, "x-overflow": "drop-head"},
    )
    client = redis.asyncio.Redis.from_url(redis_url)

    async def rabbit() -> None:
        while time.perf_counter() < until:
            at = time.perf_counter()
            await channel.default_exchange.publish(
                aio_pika.Message(b"probe", delivery_mode=aio_pika.DeliveryMode.PERSISTENT), routing_key=queue.name
            )
            found.append(("rabbit", at, time.perf_counter() - at))
            await asyncio.sleep(max(0.0, at + every - time.perf_counter()))

    async def redis_rtt() -> None:
        while time.perf_counter() < until:
            at = time.perf_counter()
            await client.incr("bench:trace:probe")
            found.append(("redis", at, time.perf_counter() - at))
            await asyncio.sleep(max(0.0, at + every - time.perf_counter()))

    try:
        await asyncio.gather(rabbit(), redis_rtt())
    finally:
        await queue.delete(if_unused=False, if_empty=False)
        await client.delete("bench:trace:probe")
        await client.aclose()
        await connection.close()
    return found


def _probe_process(args: tuple[str, str, float, float]) -> list[tuple[str, float, float]]:
    _install_fast_loop()
    return asyncio.run(_probe(*args))


# --- samplers -------------------------------------------------------------------------------


def thread_ticks(pid: int) -> dict[int, tuple[str, int]]:
    """CPU ticks and name of each thread of a process (chDB names its pools)."""
    found: dict[int, tuple[str, int]] = {}
    with contextlib.suppress(OSError):
        for task in Path(f"/proc/{pid}/task").iterdir():
            with contextlib.suppress(OSError, IndexError, ValueError):
                text = (task / "stat").read_text()
                name = text[text.index("(") + 1 : text.rindex(")")]
                fields = text.rsplit(")", 1)[1].split()
                found[int(task.name)] = (name.rstrip("0123456789") or name, int(fields[11]) + int(fields[12]))
    return found


def machine_ticks() -> tuple[int, int]:
    """(busy, idle) ticks of all CPUs: /proc/stat's first line (idle + iowait as idle)."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]
    return sum(fields[:8]) - idle, idle


def descendants(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                if int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                    child = int(entry.name)
                    found += [child, *descendants(child)]
    return found


@dataclass
class CpuSampler:
    rsms: Rsms
    every: float
    samples: list[dict[str, Any]] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        pids = processes(self.rsms)
        taken = {pid for group in pids.values() for pid in group}
        pids["bench"] = [pid for pid in descendants(os.getpid()) if pid not in taken]
        ledger = pids.get("ledger", [None])[0]
        prev: dict[int, int] = {}
        prev_threads: dict[int, tuple[str, int]] = {}
        prev_machine: tuple[int, int] | None = None
        prev_at = time.perf_counter()
        while not self.stop.wait(max(0.0, prev_at + self.every - time.perf_counter())):
            now = time.perf_counter()
            span = now - prev_at
            cpu: dict[str, float] = {}
            ticks: dict[int, int] = {}
            for service, group in pids.items():
                spent = 0
                for pid in group:
                    used = cpu_ticks(pid)
                    if used is None:
                        continue
                    ticks[pid] = used
                    spent += used - prev.get(pid, used)
                cpu[service] = spent / CLOCK_TICKS / span
            machine = machine_ticks()
            cpu["machine_busy"] = (machine[0] - prev_machine[0]) / CLOCK_TICKS / span if prev_machine else math.nan
            cpu["machine_idle"] = (machine[1] - prev_machine[1]) / CLOCK_TICKS / span if prev_machine else math.nan
            prev_machine = machine
            threads = thread_ticks(ledger) if ledger else {}
            ledger_threads: dict[str, float] = collections.defaultdict(float)
            for tid, (name, used) in threads.items():
                # A thread started since the last sample spent all its ticks in between.
                before = prev_threads[tid][1] if tid in prev_threads else (0 if prev_threads else used)
                if used > before:
                    ledger_threads[name] += (used - before) / CLOCK_TICKS / span
            if prev:
                self.samples.append(
                    {
                        "at": now,
                        "span": span,
                        "cpu": cpu,
                        "ledger_threads": ledger_threads,
                        "load1": os.getloadavg()[0],
                    }
                )
            prev, prev_threads, prev_at = ticks, threads, now


@dataclass
class RabbitSampler:
    vhost: str
    every: float
    samples: list[dict[str, Any]] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        while not self.stop.wait(self.every):
            at = time.perf_counter()
            conns = self._ask(["list_connections", "vhost", "name", "state", "recv_oct", "send_oct"])
            queues = self._ask(["list_queues", "-p", self.vhost, "name", "messages_ready", "messages_unacknowledged"])
            mine = [line for line in conns if line and line[0] == self.vhost]
            self.samples.append(
                {"at": at, "took": time.perf_counter() - at, "connections": mine, "queues": [q for q in queues if q]}
            )

    @staticmethod
    def _ask(words: list[str]) -> list[list[str]]:
        with contextlib.suppress(subprocess.SubprocessError, OSError):
            done = subprocess.run(
                ["rabbitmqctl", "-q", "--no-table-headers", *words], capture_output=True, text=True, timeout=30
            )
            return [line.split("\t") for line in done.stdout.splitlines()]
        return []


@dataclass
class Dumper:
    """`py-spy dump` of the named services' processes every `every` seconds: what each
    thread was doing at that moment (a stall shows as the same stack in a row)."""

    rsms: Rsms
    services: tuple[str, ...]
    every: float
    dumps: list[dict[str, Any]] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        py_spy = str(Path(sys.executable).with_name("py-spy"))
        found = processes(self.rsms)
        pids = [(s, pid) for s in self.services for pid in sorted(set(found.get(s, [])))]
        while not self.stop.wait(self.every):
            for service, pid in pids:
                at = time.perf_counter()
                done = subprocess.run(
                    [py_spy, "dump", "--nonblocking", "--pid", str(pid)], capture_output=True, text=True, timeout=30
                )
                self.dumps.append({"at": at, "service": service, "pid": pid, "text": done.stdout})


def start_profiles(
    rsms: Rsms, out: Path, seconds: float, rate: int, raw: bool = False, native: bool = False
) -> list[subprocess.Popen[bytes]]:
    """py-spy on every Python process of the gateway (uvicorn's workers, each service):
    speedscope with idle samples (ordered: a timeline), or `raw` (busy samples only, folded
    stacks: CPU shares; `native` adds the C frames, uvloop's and chDB's)."""
    spies = []
    py_spy = Path(sys.executable).with_name("py-spy")
    for service, pids in processes(rsms).items():
        if service in ("rabbitmq", "redis", "supervisor"):
            continue
        for pid in sorted(set(pids)):
            if raw:
                shape = ["-f", "raw", "-o", str(out / f"{service}-{pid}.txt"), *(["--native"] if native else [])]
            else:
                shape = ["--idle", "-f", "speedscope", "-o", str(out / f"{service}-{pid}.speedscope.json")]
            spies.append(
                subprocess.Popen(
                    [
                        str(py_spy),
                        "record",
                        "--pid",
                        str(pid),
                        "--nonblocking",
                        "--threads",
                        "--rate",
                        str(rate),
                        "--duration",
                        str(math.ceil(seconds)),
                        *shape,
                    ],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
    return spies


# --- the per-second table ---------------------------------------------------------------------


def per_second(records: list[tuple[float, float, float, float, int]], start: float) -> list[dict[str, float]]:
    rows: dict[int, list[tuple[float, float, float, float, int]]] = collections.defaultdict(list)
    for record in records:
        rows[int(record[0] - start)].append(record)
    table = []
    for second in sorted(rows):
        group = rows[second]
        latencies = sorted((r[3] if not math.isnan(r[3]) else math.inf) - r[0] for r in group)
        waits = sorted(r[2] - r[0] for r in group if not math.isnan(r[2]))
        table.append(
            {
                "second": second,
                "sent": len(group),
                "p50_ms": percentile(latencies, 50) * 1000,
                "p99_ms": percentile(latencies, 99) * 1000,
                "max_ms": latencies[-1] * 1000,
                "conn_wait_p99_ms": percentile(waits, 99) * 1000 if waits else math.nan,
                "lag_max_ms": max(r[1] - r[0] for r in group) * 1000,
            }
        )
    return table


def cpu_by_second(samples: list[dict[str, Any]], start: float) -> dict[int, dict[str, float]]:
    seconds: dict[int, dict[str, list[float]]] = collections.defaultdict(lambda: collections.defaultdict(list))
    for sample in samples:
        second = math.floor(sample["at"] - start - 1e-9)  # a sample covers the time before it
        for name, share in sample["cpu"].items():
            seconds[second][name].append(share)
        for name, share in sample["ledger_threads"].items():
            seconds[second]["L:" + name].append(share)
        seconds[second]["load1"].append(sample["load1"])
    return {s: {n: sum(v) / len(v) for n, v in d.items()} for s, d in seconds.items()}


SHORT = {
    "machine_busy": "BUSY",
    "machine_idle": "idle",
    "bench": "bench",
    "ingest": "ing",
    "dispatcher": "disp",
    "ledger": "ledg",
    "webhooks": "hook",
    "provider-sim": "sim",
    "redis": "redis",
    "rabbitmq": "rmq",
    "supervisor": "sup",
}
"""Column names of the per-second table; BUSY/idle: the whole machine's CPU (2 cores: 200 %)."""


def print_trace(
    table: list[dict[str, float]],
    cpu: dict[int, dict[str, float]],
    probes: list[tuple[str, float, float]],
    start: float,
) -> None:
    probed: dict[tuple[str, int], list[float]] = collections.defaultdict(list)
    for what, at, took in probes:
        probed[(what, math.floor(at - start))].append(took * 1000)
    print(
        "  s  sent    p50    p99      max connwait99 lag | confirm p50/max redis p50/max"
        " | CPU % of a core | ledger threads > 15 %"
    )
    for row in table:
        second = int(row["second"])
        confirm, rtt = sorted(probed[("rabbit", second)]) or [math.nan], sorted(probed[("redis", second)]) or [math.nan]
        probe = f"{percentile(confirm, 50):5.1f}/{confirm[-1]:5.0f} {percentile(rtt, 50):5.1f}/{rtt[-1]:5.0f}"
        shares = cpu.get(second, {})
        busy = " ".join(f"{SHORT[n]} {100 * v:3.0f}" for n, v in shares.items() if n in SHORT and n != "supervisor")
        threads = sorted(((v, n[2:]) for n, v in shares.items() if n.startswith("L:") and v > 0.15), reverse=True)
        hot = " ".join(f"{n} {100 * v:.0f}" for v, n in threads[:4])
        print(
            f"{second:3d} {row['sent']:5.0f} {row['p50_ms']:6.0f} {row['p99_ms']:6.0f} {row['max_ms']:8.0f} "
            f"{row['conn_wait_p99_ms']:8.0f} {row['lag_max_ms']:5.0f} | {probe} | {busy} "
            f"ld {shares.get('load1', math.nan):4.1f} | {hot}"
        )


def summary(records: list[tuple[float, float, float, float, int]]) -> dict[str, float]:
    latencies = sorted((r[3] if not math.isnan(r[3]) else math.inf) - r[0] for r in records)
    lags = sorted(r[1] - r[0] for r in records)
    return {
        "sent": len(records),
        "ok": sum(1 for r in records if r[4] == 200),
        "p50_ms": percentile(latencies, 50) * 1000,
        "p90_ms": percentile(latencies, 90) * 1000,
        "p99_ms": percentile(latencies, 99) * 1000,
        "max_ms": latencies[-1] * 1000,
        "client_lag_p99_ms": percentile(lags, 99) * 1000,
    }


# --- speedscope windows -----------------------------------------------------------------------


def summarise_profile(path: Path, window: tuple[float, float] | None, rate: int, top: int = 12) -> list[str]:
    """Leaf-ish frames of the non-idle samples, optionally of the samples in a time window
    (seconds since py-spy started; the sample index / rate: approximate when py-spy fell behind)."""
    data = json.loads(path.read_text())
    frames = data["shared"]["frames"]
    lines = []
    for profile in data["profiles"]:
        samples = profile["samples"]
        chosen = samples
        if window is not None:
            chosen = samples[int(window[0] * rate) : int(window[1] * rate)]
        counter: collections.Counter[str] = collections.Counter()
        busy = 0
        for stack in chosen:
            names = [frames[i]["name"] + ":" + Path(frames[i].get("file", "?")).name for i in stack]
            if not names or _idle(names):
                continue
            busy += 1
            counter[" < ".join(reversed(names[-3:]))] += 1
        if not chosen:
            continue
        lines.append(f"{path.name} {profile['name']}: {busy}/{len(chosen)} busy samples")
        lines += [f"   {n:5d} {100 * n / max(1, busy):4.0f}%  {name}" for name, n in counter.most_common(top)]
    return lines


IDLE_LEAVES = ("select", "epoll", "poll", "wait", "run_once", "_run_once", "acquire", "sleep", "accept", "recv")
LOOP_LEAVES = ("Runner.run", "_worker", "stop_when_orphaned.<locals>.watch")
"""Frames that are on top while a thread waits: uvloop's loop (a uvicorn worker's too) runs
in C under `Runner.run`, so a sample with one of them on top is (mostly) a thread waiting
for work. (A uvicorn worker's thread answering its supervisor's health checks waits in
`Connection._recv`: an IDLE_LEAVES word.)"""


def _idle(names: list[str]) -> bool:
    leaf = names[-1].split(":")[0]
    return leaf in LOOP_LEAVES or any(leaf.startswith(word) or leaf.endswith(word) for word in IDLE_LEAVES)


# --- main ---------------------------------------------------------------------------------------


def renice(rsms: Rsms, niceness: dict[str, int]) -> None:
    """Every thread of every process of the named services (Linux keeps a nice per thread;
    threads started later inherit their creator's)."""
    for service, pids in processes(rsms).items():
        if service not in niceness:
            continue
        for pid in set(pids):
            with contextlib.suppress(OSError):
                for task in Path(f"/proc/{pid}/task").iterdir():
                    with contextlib.suppress(OSError):
                        os.setpriority(os.PRIO_PROCESS, int(task.name), niceness[service])


def cpu_seconds(samples: list[dict[str, Any]]) -> dict[str, float]:
    spent: dict[str, float] = collections.defaultdict(float)
    for sample in samples:
        for name, share in sample["cpu"].items():
            if not math.isnan(share):
                spent[name] += share * sample["span"]
    return spent


def ledger_consumed(rsms: Rsms) -> dict[str, float]:
    """The ledger's deliveries taken so far, by queue (its /metrics; its port from its environment)."""
    import httpx

    pid = processes(rsms).get("ledger", [0])[0]
    try:
        environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        port = next(v.split(b"=", 1)[1].decode() for v in environ if v.startswith(b"RSMS_LEDGER_HTTP_PORT="))
        text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    except (OSError, StopIteration, httpx.HTTPError):
        return {}
    found = {}
    for line in text.splitlines():
        if line.startswith("rsms_ledger_events_consumed_total{"):
            queue = line.split('queue="', 1)[1].split('"', 1)[0]
            found[queue] = float(line.rsplit(" ", 1)[1])
    return found


def deliveries_line(before: dict[str, float], after: dict[str, float], accepted: int) -> str:
    taken = {q.removeprefix("rsms.ledger."): after.get(q, 0) - before.get(q, 0) for q in after}
    return "ledger deliveries per accepted send: " + " ".join(
        f"{q} {n / max(1, accepted):.3f}" for q, n in taken.items() if n
    )


def closed_loop(rsms: Rsms, sink: Sink, seconds: float) -> dict[str, float]:
    """wrk, 64 connections, for `seconds`: accepted/s and each service's CPU-ms per accepted."""
    before = accepted_now(rsms)
    consumed = ledger_consumed(rsms)
    sampler = CpuSampler(rsms, 0.5)
    thread = threading.Thread(target=sampler.run, daemon=True)
    thread.start()
    wrk = run_wrk(rsms.load(1, unique=True), seconds, 64)
    sampler.stop.set()
    thread.join(30)
    accepted = accepted_now(rsms) - before
    drain(rsms, sink, before, 600)
    say("  closed loop: " + deliveries_line(consumed, ledger_consumed(rsms), accepted))
    per = {n: 1000 * v / max(1, accepted) for n, v in cpu_seconds(sampler.samples).items()}
    return {"accepted_per_s": accepted / wrk.seconds, **{f"cpu_ms_{n}": v for n, v in per.items()}}


def run_one(rsms: Rsms, sink: Sink, args: argparse.Namespace, rate: float, out: Path, nice: str = "") -> dict[str, Any]:
    niceness = {k: int(v) for k, v in (item.split("=") for item in nice.split(",") if item)}
    renice(rsms, {service: 0 for service in ("ledger", "dispatcher", "webhooks", "provider-sim", "ingest", "redis")})
    renice(rsms, niceness)
    if args.closed:
        closed = closed_loop(rsms, sink, args.closed)
        print(f"\n## closed loop nice {niceness}: " + " ".join(f"{k} {v:.2f}" for k, v in closed.items()))
    target = Target("127.0.0.1", rsms.port, "/api/v1/sms/send", send_body(1), rsms.key)
    sink.reset()
    before = accepted_now(rsms)
    consumed = ledger_consumed(rsms)
    cpu = CpuSampler(rsms, args.sample_every)
    rabbit = RabbitSampler(rsms.vhost.name, args.rabbit_every)
    dumper = Dumper(rsms, tuple(args.dump), args.dump_every)
    threads = [threading.Thread(target=cpu.run, daemon=True)]
    if args.dump:
        threads.append(threading.Thread(target=dumper.run, daemon=True))
    if args.rabbit_every > 0:
        threads.append(threading.Thread(target=rabbit.run, daemon=True))
    profile_dir = out / f"profile-{rate:.0f}"
    profile_dir.mkdir(parents=True, exist_ok=True)
    spies = (
        start_profiles(rsms, profile_dir, args.seconds + 14, args.profile_rate, args.profile_raw, args.native)
        if args.profile or args.profile_raw
        else []
    )
    profile_zero = time.perf_counter()  # py-spy's sample 0, roughly (it takes a moment to attach)
    if spies:
        time.sleep(1.0)
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(2) as pool:
        pool.map(time.sleep, [0.2, 0.2])  # both processes exist before the sampler lists the bench's
        start = time.perf_counter() + 1.0
        for thread in threads:
            thread.start()
        say(f"open loop {rate:,.0f}/s for {args.seconds:.0f} s, load average {load_average()}")
        amqp = f"amqp://guest:guest@localhost:5672/{rsms.vhost.name}"
        redis_url = rsms.redis.url if rsms.redis is not None else ""
        probe = pool.apply_async(_probe_process, ((amqp, redis_url, args.probe_every, start + args.seconds),))
        records = pool.apply(_client_process, ((target, rate, args.seconds, args.connections, 10.0, start),))
        probes = probe.get(60)
    time.sleep(1.0)
    cpu.stop.set()
    rabbit.stop.set()
    dumper.stop.set()
    for thread in threads:
        thread.join(60)
    for spy in spies:
        with contextlib.suppress(subprocess.TimeoutExpired):
            spy.wait(30)
    drained, _, waited = drain(rsms, sink, before, 600)
    result = summary(records)
    deliveries = deliveries_line(consumed, ledger_consumed(rsms), accepted_now(rsms) - before)
    say(f"  {result}; drained {drained} after {waited:.0f} s, load average {load_average()}")
    table = per_second(records, start)
    by_second = cpu_by_second(cpu.samples, start)
    print(f"\n## rate {rate:,.0f}/s nice {niceness}: {json.dumps({k: round(v, 1) for k, v in result.items()})}")
    print_trace(table, by_second, probes, start)
    spent = cpu_seconds(cpu.samples)
    answered = sum(1 for r in records if r[4] == 200)
    print(
        "  CPU-ms per answered send over the run: "
        + " ".join(f"{SHORT.get(n, n)} {1000 * v / max(1, answered):.2f}" for n, v in spent.items())
    )
    print("  " + deliveries)
    for sample in rabbit.samples:
        flows = [c for c in sample["connections"] if len(c) > 2 and c[2] != "running"]
        queues = " ".join(f"{q[0].removeprefix('rsms.')}={q[1]}/{q[2]}" for q in sample["queues"] if len(q) > 2)
        print(f"  rabbit @{sample['at'] - start:5.1f}s (took {sample['took']:.1f}s): not running {flows}; {queues}")
    document = {
        "rate": rate,
        "nice": niceness,
        "start": start,
        "profile_zero": profile_zero,
        "summary": result,
        "per_second": table,
        "cpu": cpu.samples,
        "rabbit": rabbit.samples,
        "records": records,
        "probes": probes,
        "dumps": dumper.dumps,
    }
    (out / f"trace-{rate:.0f}-{len(list(out.glob('trace-*')))}.json").write_text(json.dumps(document))
    return document


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rates", type=float, nargs="+", default=[1000.0, 500.0])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--sample-every", type=float, default=0.5)
    parser.add_argument("--dump", nargs="*", default=[], help="Services to `py-spy dump` during the run.")
    parser.add_argument("--dump-every", type=float, default=0.5)
    parser.add_argument("--closed", type=float, default=0, help="Seconds of wrk (closed loop) before each run.")
    parser.add_argument("--probe-every", type=float, default=0.01, help="Seconds between confirm/Redis probes.")
    parser.add_argument("--rabbit-every", type=float, default=0.0)
    parser.add_argument("--profile", action="store_true")
    parser.add_argument(
        "--nice", nargs="+", help="Variants run in turn at each rate: 'ledger=10,dispatcher=5' ('' for none)."
    )
    parser.add_argument("--profile-raw", action="store_true", help="py-spy -f raw (busy samples) instead.")
    parser.add_argument("--native", action="store_true", help="With --profile-raw: C frames too.")
    parser.add_argument("--profile-rate", type=int, default=100)
    parser.add_argument("--set", action="append", default=[], metavar="RSMS_X=VALUE")
    parser.add_argument("--out", type=Path, default=RUN_DIR.parent / "trace-out")
    parser.add_argument("--summarise", type=Path, help="Print the py-spy profiles of a run's directory.")
    parser.add_argument("--window", type=float, nargs=2, help="With --summarise: seconds since py-spy started.")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.summarise:
        for path in sorted(args.summarise.glob("*.speedscope.json")):
            print("\n".join(summarise_profile(path, tuple(args.window) if args.window else None, args.profile_rate)))
        return 0
    out = args.out / time.strftime("%H%M%S")
    out.mkdir(parents=True, exist_ok=True)
    say(f"load average before: {load_average()}; writing {out}")
    sink = Sink()
    rsms: Rsms | None = None
    try:
        sink.start()
        rsms = Rsms(sink.port, dict(item.split("=", 1) for item in args.set), directory=RUN_DIR)
        rsms.vhost = Vhost("rsms-bench-trace")
        rsms.start()
        say(f"  up: {', '.join(f'{name} {pids}' for name, pids in processes(rsms).items())}")
        before = accepted_now(rsms, before_any=True)
        run_wrk(rsms.load(1), 2)
        drain(rsms, sink, before, 600)
        for rate in args.rates:
            for nice in args.nice or [""]:
                run_one(rsms, sink, args, rate, out, nice)
    finally:
        if rsms is not None:
            rsms.stop()
        sink.stop()
    say(f"load average after: {load_average()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
