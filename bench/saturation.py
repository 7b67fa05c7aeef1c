"""Issue 10's two long measurements of the whole gateway: open-loop p99 and memory under saturation.

    .venv/bin/python -m bench.saturation [--rate 1000] [--latency-seconds 30] [--minutes 10] [--json]
    .venv/bin/python -m bench.saturation --only latency      # or --only saturation

Starts the whole gateway with `rsms up` (supervisor, ingest with its uvicorn workers, one
dispatcher, ledger, webhook sender, the idle provider simulator) on a throw-away vhost
and a redis-server of its own, sending over SMPP to the counting sink, exactly as
`bench.peers` runs RSMS (`bench.peers_systems.Rsms`, `bench.peers.Sink`). Then:

1. Open-loop latency: single-recipient sends scheduled at `--rate` a second for
   `--latency-seconds` (the Python client of `bench.ingest_loadgen`: latency runs from the
   scheduled time, so a stall is charged to every request it delays); p50/p90/p99/max of
   the answered requests, how many were answered, errors, and whether the client kept its
   own schedule (when it did not, the machine was saturated and the figure is the
   machine's). Target: p99 < 50 ms at 1,000 requests/s. The backlog it leaves is drained
   before the saturation part starts.
2. Saturation: wrk, 1 thread, 64 connections, closed loop, a new recipient number every
   request, for `--minutes`. Every `--sample-every` seconds the RSS and CPU of every process
   of every service (ingest's workers, the supervisor, the gateway's redis-server; the
   machine's RabbitMQ apart, as shared), a progress line every `--progress-every` seconds.
   After wrk stops, the bench waits until the sink has every accepted message and every
   queue of the vhost is empty (sampling on), then prints per service RSS at the start, after
   one minute, at the peak, at the end of the load and after the drain, the slope over the
   last half of the load (MB/min) with a verdict (bounded/growing), and the delivery check:
   accepted (ingest's own counter) == distinct numbers at the sink, none sent twice.

Progress goes to stderr, the report to stdout (`--json`: one JSON document). Exit status 1
when the run failed or the delivery check did not hold (lost, sent twice, not drained);
a missed latency target or a growing service is reported, not an error.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import json
import math
import os
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import httpx
import redis

from bench.ingest_loadgen import Latency, Target, run_open_loop
from bench.ingest_send import TARGET_P99_MS, send_body
from bench.peers import CLOCK_TICKS, Sink, WrkResult, cpu_ticks, rabbitmq_pids, run_wrk, say
from bench.peers_systems import PEERS_DIR, RSMS_ALL_SERVICES, Rsms, Vhost
from bench.saturation_figures import (
    DEFAULT_GROWING_ABOVE_MB_PER_MIN,
    DRAIN,
    LOAD,
    Delivery,
    Sample,
    ServiceMemory,
    accepted_from_metrics,
    delivery_line,
    key_families_line,
    key_family,
    latency_table,
    memory_table,
    parse_queue_list,
    summarise_memory,
)

CONNECTIONS = 64
RABBITMQ = "rabbitmq"
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")
RUN_DIR = PEERS_DIR.parent / "saturation" / "rsms"


# --- reading the gateway ----------------------------------------------------------------


def rss_bytes(pid: int) -> int | None:
    try:
        return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE_SIZE
    except (OSError, IndexError, ValueError):
        return None


def processes(rsms: Rsms) -> dict[str, list[int]]:
    """Every process of every service now (uvicorn's supervisor may replace an ingest
    worker), and RabbitMQ's. Each once: `Rsms.parts` lists a child whose command line names
    its service under the service's main process and again on its own (ingest's forked
    workers once were, their RSS and CPU counted twice); uvicorn's spawned workers and
    multiprocessing's resource tracker are listed under ingest's main process only."""
    found = {service: list(dict.fromkeys(pids)) for service, pids in rsms.parts(RSMS_ALL_SERVICES).items()}
    found[RABBITMQ] = rabbitmq_pids()
    return found


class Sampler:
    """RSS and CPU share of each service since the previous sample."""

    def __init__(self, rsms: Rsms) -> None:
        self.rsms = rsms
        self.started = time.monotonic()
        self.ticks: dict[int, int] = {}
        self.at = self.started

    def restart(self) -> None:
        self.started = time.monotonic()

    def take(self, phase: str) -> Sample:
        now = time.monotonic()
        elapsed = now - self.at
        rss: dict[str, int] = {}
        cpu: dict[str, float] = {}
        counts: dict[str, int] = {}
        ticks: dict[int, int] = {}
        for service, pids in processes(self.rsms).items():
            total, spent = 0, 0
            for pid in pids:
                size, used = rss_bytes(pid), cpu_ticks(pid)
                if size is None or used is None:
                    continue  # gone between listing and reading
                total += size
                ticks[pid] = used
                spent += used - self.ticks.get(pid, used)
            rss[service], counts[service] = total, len(pids)
            cpu[service] = spent / CLOCK_TICKS / elapsed if elapsed > 0 and self.ticks else math.nan
        self.ticks, self.at = ticks, now
        return Sample(round(now - self.started, 1), phase, rss, cpu, counts)


def accepted_so_far(rsms: Rsms) -> int | None:
    """Recipients ingest accepted since it started (its own counter, all workers)."""
    try:
        return accepted_from_metrics(httpx.get(f"http://127.0.0.1:{rsms.ops_port}/metrics", timeout=5).text)
    except httpx.HTTPError:
        return None


def queued_messages(rsms: Rsms) -> int | None:
    """Messages (ready and unacknowledged) in every queue of the gateway's vhost; None if
    rabbitmqctl could not say. rabbitmqctl starts an Erlang VM (about a second of CPU), so
    the bench asks only while draining."""
    try:
        done = subprocess.run(
            ["rabbitmqctl", "-q", "list_queues", "-p", rsms.vhost.name, "name", "messages"],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
    except (subprocess.SubprocessError, OSError):
        return None
    return sum(parse_queue_list(done.stdout).values())


def redis_contents(url: str, sample: int = 5000) -> str:
    """used_memory, the key count, and the key families of a SCAN sample with one TTL each."""
    client = redis.Redis.from_url(url, decode_responses=True)
    try:
        counts: dict[str, int] = {}
        ttls: dict[str, int] = {}
        sampled = 0
        for key in client.scan_iter(count=1000):
            family = key_family(key)
            counts[family] = counts.get(family, 0) + 1
            if family not in ttls:
                ttls[family] = int(client.ttl(key))
            sampled += 1
            if sampled >= sample:
                break
        used = client.info("memory")["used_memory_human"]
        return f"used_memory {used}, " + key_families_line(counts, ttls, sampled, int(client.dbsize()))
    finally:
        client.close()


def without_nan(value: object) -> object:
    """NaN (a figure that does not exist, e.g. after 1 minute of a shorter run) as JSON null."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {key: without_nan(item) for key, item in value.items()}
    if isinstance(value, list):
        return [without_nan(item) for item in value]
    return value


def load_average() -> str:
    return " ".join(f"{v:.2f}" for v in os.getloadavg()) + f" ({os.cpu_count()} cores)"


# --- draining ---------------------------------------------------------------------------


def accepted_now(rsms: Rsms, *, before_any: bool = False) -> int:
    """ingest's count; `before_any`: before the first accepted send the counter has no sample yet."""
    found = accepted_so_far(rsms)
    if found is None and before_any:
        return 0
    if found is None:
        raise RuntimeError("ingest's /metrics has no rsms_ingest_accepted_recipients_total: the bench counts with it")
    return found


def drain(
    rsms: Rsms, sink: Sink, since: int, cap: float, sampler: Sampler | None = None, samples: list[Sample] | None = None
) -> tuple[bool, int | None, float]:
    """Waits until the sink (reset when the load started) has every recipient ingest accepted
    since its counter read `since`, and every queue of the vhost is empty (the ledger has
    caught up too). Returns (drained, messages left in the queues, seconds waited)."""
    started = time.monotonic()
    last_progress = 0.0
    queued: int | None = None
    while True:
        time.sleep(2)
        waited = time.monotonic() - started
        if sampler is not None and samples is not None:
            samples.append(sampler.take(DRAIN))
        accepted = accepted_now(rsms) - since
        submits = sink.stats().submits
        if submits >= accepted:
            queued = queued_messages(rsms)
            if queued == 0:
                return True, 0, waited
        if waited - last_progress >= 15:
            last_progress = waited
            left = "" if queued is None else f", {queued:,} messages in the queues"
            say(f"  draining {waited:4.0f} s: {submits:,} of {accepted:,} at the sink{left}")
        if waited > cap:
            return False, queued_messages(rsms), waited


# --- the two parts ----------------------------------------------------------------------


@dataclass
class LatencyPart:
    rate: float
    seconds: float
    connections: int
    result: Latency
    accepted: int  # recipients ingest counted as accepted during the run
    drained_after_s: float | None

    def lines(self) -> list[str]:
        drained = "NOT drained" if self.drained_after_s is None else f"drained {self.drained_after_s:.0f} s after"
        table = latency_table(self.result, self.rate, self.seconds, self.connections, TARGET_P99_MS)
        return [*table, "", f"ingest accepted {self.accepted:,}; its backlog {drained}"]


def latency_part(rsms: Rsms, sink: Sink, args: argparse.Namespace) -> LatencyPart:
    target = Target("127.0.0.1", rsms.port, "/api/v1/sms/send", send_body(1), rsms.key)
    say(f"open loop: {args.rate:,.0f} single-recipient sends a second for {args.latency_seconds:.0f} s …")
    sink.reset()
    before = accepted_now(rsms)
    result = run_open_loop(target, rate=args.rate, seconds=args.latency_seconds, connections=args.open_loop_connections)
    say(
        f"  done: {result.answered:,} of {result.sent:,} answered, p99 {result.p99_ms:,.1f} ms, "
        f"client lag p99 {result.generator_lag_p99_ms:.1f} ms; draining its backlog …"
    )
    drained, _, waited = drain(rsms, sink, before, args.drain_cap)
    say(f"  {'drained' if drained else 'NOT drained'} after {waited:.0f} s")
    accepted = accepted_now(rsms) - before
    return LatencyPart(args.rate, args.latency_seconds, args.open_loop_connections, result, accepted,
                       round(waited, 1) if drained else None)  # fmt: skip


@dataclass
class SaturationPart:
    minutes: float
    wrk: WrkResult
    delivery: Delivery
    sent_per_s: float
    drained_after_s: float | None
    redis_at_end: str
    growing_above: float
    memory: list[ServiceMemory]
    samples: list[Sample]

    @property
    def accepted_per_s(self) -> float:
        return self.delivery.accepted / self.wrk.seconds

    def lines(self) -> list[str]:
        drained = "" if self.drained_after_s is None else f" (drained {self.drained_after_s:.0f} s after the load)"
        return [
            f"## Saturation: wrk 1 thread, {CONNECTIONS} connections, single recipient, {self.minutes:g} min",
            "",
            f"accepted {self.delivery.accepted:,} ({self.accepted_per_s:,.0f}/s), sent end to end "
            f"{self.delivery.submits:,} ({self.sent_per_s:,.0f}/s at the sink); wrk: {self.wrk.accepted:,} 2xx, "
            f"{self.wrk.requests - self.wrk.accepted:,} not, {self.wrk.socket_errors:,} socket errors, "
            f"p99 {self.wrk.p99_ms:,.0f} ms (closed loop: a queueing figure)",
            f"delivery: {delivery_line(self.delivery)}{drained}",
            "",
            memory_table(self.memory),
            "",
            "RSS in MB (MiB), summed over a service's processes (forked workers share pages: the sum "
            f"overstates them); 'growing' above {self.growing_above:g} MB/min over the last half of the load. "
            "RabbitMQ is the machine's, shared with everyone using it; its queues hold what the dispatcher "
            "has not sent yet.",
            "",
            f"The gateway's Redis at the end: {self.redis_at_end}. Keys kept for a TTL grow its memory with "
            "every message until the TTL ends: bounded by the TTL, not by the run.",
        ]


def saturation_part(rsms: Rsms, sink: Sink, args: argparse.Namespace) -> SaturationPart:
    seconds = args.minutes * 60
    sampler = Sampler(rsms)
    sampler.take(LOAD)  # primes the CPU counters
    time.sleep(1)
    sink.reset()
    before = accepted_now(rsms)
    sampler.restart()
    samples = [sampler.take(LOAD)]
    say(f"saturation: wrk 1 thread, {CONNECTIONS} connections, a new number every request, {args.minutes:g} min …")
    last_progress = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        wrk = pool.submit(run_wrk, rsms.load(1, unique=True), seconds, CONNECTIONS)
        while True:
            next_sample = sampler.started + len(samples) * args.sample_every
            with contextlib.suppress(concurrent.futures.TimeoutError):
                wrk.result(timeout=max(0.0, next_sample - time.monotonic()))
            if wrk.done():
                break
            samples.append(sampler.take(LOAD))
            if time.monotonic() - last_progress >= args.progress_every:
                last_progress = time.monotonic()
                say(progress_line(samples[-1], accepted_now(rsms) - before, sink.stats().submits))
        result = wrk.result()
    samples.append(sampler.take(LOAD))
    accepted = accepted_now(rsms) - before
    say(
        f"  wrk done: {result.accepted:,} answered 2xx in {result.seconds:.0f} s; ingest counted {accepted:,} "
        "accepted (requests in flight when wrk stopped too); draining …"
    )
    drained, queued, waited = drain(rsms, sink, before, args.drain_cap, sampler, samples)
    stats = sink.stats()
    accepted = accepted_now(rsms) - before
    span = stats.last - stats.first
    held = redis_contents(rsms.redis.url) if rsms.redis is not None else "not read"
    return SaturationPart(
        minutes=args.minutes,
        wrk=result,
        delivery=Delivery(accepted, stats.submits, stats.destinations, queued, drained),
        sent_per_s=(stats.submits - 1) / span if stats.submits > 1 and span > 0 else math.nan,
        drained_after_s=round(waited, 1) if drained else None,
        redis_at_end=held,
        growing_above=args.growing_above,
        memory=summarise_memory(samples, args.growing_above, shared=(RABBITMQ,)),
        samples=samples,
    )


def progress_line(sample: Sample, accepted: int, submits: int) -> str:
    memory = "  ".join(f"{name} {size / 2**20:,.0f}" for name, size in sample.rss.items())
    busy = "  ".join(f"{name} {share:.0%}" for name, share in sample.cpu.items() if not math.isnan(share))
    return (
        f"  {sample.seconds:5.0f} s: accepted {accepted:,}, at the sink {submits:,}, "
        f"load average {os.getloadavg()[0]:.1f}\n          RSS MB: {memory}\n          CPU: {busy}"
    )


# --- main ---------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", choices=("latency", "saturation"), help="Run one part only.")
    parser.add_argument("--rate", type=float, default=1000.0, help="Open loop: sends scheduled a second.")
    parser.add_argument("--latency-seconds", type=float, default=30.0, help="Open loop: how long.")
    parser.add_argument("--open-loop-connections", type=int, default=64)
    parser.add_argument("--minutes", type=float, default=10.0, help="Saturation: how long wrk runs.")
    parser.add_argument("--sample-every", type=float, default=5.0, help="Seconds between RSS/CPU samples.")
    parser.add_argument("--progress-every", type=float, default=30.0, help="Seconds between progress lines.")
    parser.add_argument(
        "--growing-above",
        type=float,
        default=DEFAULT_GROWING_ABOVE_MB_PER_MIN,
        help="RSS slope (MB/min, last half of the load) above which a service counts as growing.",
    )
    parser.add_argument("--drain-cap", type=float, default=900.0, help="Longest wait for the queues to drain.")
    parser.add_argument("--set", action="append", default=[], metavar="RSMS_X=VALUE", help="An RSMS setting.")
    parser.add_argument("--json", action="store_true", help="Print one JSON document instead of the tables.")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    load_before = load_average()
    say(f"load average before: {load_before}")
    sink = Sink()
    rsms: Rsms | None = None
    latency: LatencyPart | None = None
    saturation: SaturationPart | None = None
    try:
        sink.start()
        rsms = Rsms(sink.port, dict(item.split("=", 1) for item in args.set), directory=RUN_DIR)
        rsms.vhost = Vhost("rsms-bench-saturation")
        say(f"SMPP sink on port {sink.port}; starting RSMS (rsms up in {RUN_DIR}) …")
        rsms.start()
        say(f"  up: {', '.join(f'{name} {len(pids)}' for name, pids in processes(rsms).items())} process(es)")
        # Warm-up, not measured: imports, connections, the first SMPP bind.
        before = accepted_now(rsms, before_any=True)
        run_wrk(rsms.load(1), 2)
        drain(rsms, sink, before, args.drain_cap)
        if args.only in (None, "latency"):
            latency = latency_part(rsms, sink, args)
        if args.only in (None, "saturation"):
            saturation = saturation_part(rsms, sink, args)
    except Exception:
        if rsms is not None:
            with contextlib.suppress(OSError):
                tail = (rsms.dir / "up.log").read_text(errors="replace").splitlines()[-30:]
                say("rsms up's log, last lines:\n" + "\n".join(tail))
        raise
    finally:
        if rsms is not None:
            rsms.stop()
        sink.stop()
    load_after = load_average()
    if args.json:
        report = {
            "load_average_before": load_before,
            "load_average_after": load_after,
            "latency": asdict(latency) if latency else None,
            "saturation": asdict(saturation) if saturation else None,
        }
        print(json.dumps(without_nan(report), indent=2))
    else:
        lines = [f"load average before {load_before}, after {load_after}", ""]
        for part in (latency, saturation):
            if part is not None:
                lines += [*part.lines(), ""]
        print("\n".join(lines))
    return 0 if saturation is None or saturation.delivery.intact else 1


if __name__ == "__main__":
    sys.exit(main())
