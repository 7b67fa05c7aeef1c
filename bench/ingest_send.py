"""Ingest send throughput and latency, against a bare Litestar baseline served the same way.

Measures `POST /api/v1/sms/send` on this machine with the real Redis and RabbitMQ:

1. requests/s for single-recipient sends (closed loop, `wrk` or the Python fallback);
2. recipients/s accepted in 1000-recipient sends (closed loop);
3. p99 latency at a fixed offered load (open loop, 500 requests/s by default).

The baseline (`bench/ingest_baseline.py`) decodes the same body with Litestar/msgspec and
answers a small JSON, started the same way (uvicorn, same arguments, same worker count),
in the same run, interleaved round by round with the gateway. Every figure is the median
over the rounds. The gateway runs as `rsms ingest` on a throw-away vhost and Redis
database (`bench/ingest_env.py`); after each gateway scenario the bench checks that the
dispatch queue holds at least one job per 200 answer, then purges it.

    .venv/bin/python -m bench.ingest_send [--rounds 3] [--seconds 6] [--workers 2]

Stops by itself (a fixed number of rounds of fixed length; about three minutes with the
defaults). Exits non-zero only when the run itself fails (a non-200 answer, a server that
does not start, jobs missing from the queue); a missed target is reported, not an error.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from bench.ingest_env import TAG, BenchEnv, Server, free_port
from bench.ingest_loadgen import (
    Latency,
    Target,
    Throughput,
    run_open_loop,
    run_python_closed_loop,
    run_wrk,
    wrk_path,
)

BULK_RECIPIENTS = 1000
TARGET_SINGLE_RPS = 1_500
TARGET_BULK_RECIPIENTS = 100_000
TARGET_P99_MS = 50.0
MESSAGE = "Your verification code is 482913. It expires in 10 minutes."


def send_body(recipients: int) -> bytes:
    numbers = [f"+4790{index:06d}" for index in range(recipients)]
    return json.dumps({"tag": TAG, "recipients": numbers, "message": MESSAGE}).encode()


@dataclass
class Figures:
    """Per round measurements of one scenario against one server."""

    values: list[float] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.values) if self.values else float("nan")

    def spread(self) -> str:
        return "/".join(f"{v:,.0f}" if v >= 100 else f"{v:.1f}" for v in self.values)


@dataclass
class Scenario:
    name: str
    unit: str
    target: float
    higher_is_better: bool
    gateway: Figures = field(default_factory=Figures)
    baseline: Figures = field(default_factory=Figures)

    def passed(self) -> bool:
        value = self.gateway.median
        return value >= self.target if self.higher_is_better else value < self.target


class Bench:
    def __init__(self, args: argparse.Namespace, env: BenchEnv, gateway: Server, baseline: Server) -> None:
        self.args = args
        self.env = env
        self.servers = {"gateway": gateway, "baseline": baseline}
        self.errors: list[str] = []
        self.use_wrk = wrk_path() is not None and not args.python_client

    def target(self, server: str, recipients: int) -> Target:
        port = self.servers[server].port
        body = send_body(recipients)
        return Target("127.0.0.1", port, "/api/v1/sms/send", body, self.env.api_key)

    def throughput(self, target: Target, seconds: float) -> Throughput:
        if self.use_wrk:
            # One wrk thread: it keeps up with either server and leaves the second core to them.
            return run_wrk(target, seconds=seconds, connections=self.args.connections, threads=1)
        return run_python_closed_loop(target, seconds=seconds, connections=self.args.connections, processes=2)

    def checked(self, server: str, label: str, ok: int, failed: int) -> None:
        """Every answer must be a 200, and every 200 from the gateway a job in the queue."""
        if failed:
            self.errors.append(f"{server} {label}: {failed} requests failed or answered non-200")
            print(f"    !! {failed} failed/non-200 answers from {server}", flush=True)
        if server == "gateway":
            messages, queued = self.env.take_queued()
            if queued < ok:
                problem = f"{ok} answered 200 but only {queued} jobs in the queue"
                self.errors.append(f"gateway {label}: {problem}")
                print(f"    !! {problem}", flush=True)
            elif messages:
                print(
                    f"    {queued} jobs in {messages} broker messages ({queued / messages:.1f} a message)", flush=True
                )
            self.env.reset_redis()

    def warm_up(self) -> None:
        # First requests pay for imports, connections and JIT-less caches: keep them out.
        for server in self.servers:
            for recipients in (1, BULK_RECIPIENTS):
                result = self.throughput(self.target(server, recipients), 2)
                self.checked(server, "warm-up", result.ok, result.failed)

    def run(self, scenarios: list[Scenario]) -> None:
        single, bulk, latency = scenarios
        steps: list[tuple[Scenario, Callable[[str], float]]] = [
            (single, self.single_rps),
            (bulk, self.bulk_recipients),
            (latency, self.p99_ms),
        ]
        for round_no in range(1, self.args.rounds + 1):
            # Alternate who goes first, so slow drift (page cache, broker state) is shared.
            order = ["gateway", "baseline"] if round_no % 2 else ["baseline", "gateway"]
            for scenario, measure in steps:
                for server in order:
                    value = measure(server)
                    getattr(scenario, server).values.append(value)
                    print(
                        f"  round {round_no}/{self.args.rounds}  {scenario.name:<40} "
                        f"{server:<8} {value:>12,.1f} {scenario.unit}",
                        flush=True,
                    )

    def single_rps(self, server: str) -> float:
        result = self.throughput(self.target(server, 1), self.args.seconds)
        self.checked(server, "single", result.ok, result.failed)
        return result.rate

    def bulk_recipients(self, server: str) -> float:
        result = self.throughput(self.target(server, BULK_RECIPIENTS), self.args.seconds)
        self.checked(server, "bulk", result.ok, result.failed)
        return result.rate * BULK_RECIPIENTS

    def p99_ms(self, server: str) -> float:
        result: Latency = run_open_loop(
            self.target(server, 1),
            rate=self.args.rate,
            seconds=self.args.latency_seconds,
            connections=self.args.open_loop_connections,
        )
        self.checked(server, "latency", result.ok, result.failed)
        if result.generator_lag_p99_ms > 5:
            print(
                f"    note: the generator itself sent {result.generator_lag_p99_ms:.1f} ms late "
                "(p99): the machine is saturated",
                flush=True,
            )
        print(
            f"    {server}: {result.sent} sent at {result.achieved_rate:,.0f}/s, "
            f"p50 {result.p50_ms:.1f} ms, p99 {result.p99_ms:.1f} ms, max {result.max_ms:.1f} ms",
            flush=True,
        )
        return result.p99_ms


def print_table(scenarios: list[Scenario], rounds: int) -> None:
    print(f"\nMedians of {rounds} rounds (per-round gateway figures in brackets):\n")
    print("| scenario | gateway | baseline | gateway/baseline | target | result |")
    print("| --- | ---: | ---: | ---: | --- | --- |")
    for s in scenarios:
        fmt = "{:,.0f}" if s.higher_is_better else "{:.1f}"
        gateway, baseline = s.gateway.median, s.baseline.median
        ratio = gateway / baseline if baseline else float("nan")
        sign = "≥" if s.higher_is_better else "<"
        verdict = "PASS" if s.passed() else "**MISS**"
        print(
            f"| {s.name} | {fmt.format(gateway)} {s.unit} ({s.gateway.spread()}) "
            f"| {fmt.format(baseline)} {s.unit} | {ratio:.2f} | {sign} {fmt.format(s.target)} "
            f"| {verdict} |"
        )


def _load() -> str:
    return " ".join(f"{v:.1f}" for v in os.getloadavg())


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=6.0, help="length of each throughput run")
    parser.add_argument("--latency-seconds", type=float, default=8.0, help="length of each fixed-rate run")
    parser.add_argument("--rate", type=float, default=500.0, help="offered load for the p99 scenario")
    parser.add_argument("--workers", type=int, default=2, help="uvicorn workers, the same for both servers")
    parser.add_argument("--connections", type=int, default=64, help="requests in flight (throughput runs)")
    parser.add_argument("--open-loop-connections", type=int, default=64)
    parser.add_argument(
        "--python-client", action="store_true", help="use the Python client even where wrk is installed"
    )
    parser.add_argument(
        "--hold", type=float, default=0.0, help="keep the servers up this long before the run (to attach py-spy)"
    )
    return parser.parse_args()


def main() -> int:
    args = parse_args()
    if wrk_path() is None and not args.python_client:
        print(
            "wrk is not installed: using the Python client (2 processes, asyncio keep-alive).\n"
            "For the README's figures install it first: apt-get install -y wrk",
            flush=True,
        )
    scenarios = [
        Scenario("single-recipient sends", "req/s", TARGET_SINGLE_RPS, higher_is_better=True),
        Scenario(f"{BULK_RECIPIENTS}-recipient sends", "recipients/s", TARGET_BULK_RECIPIENTS, higher_is_better=True),
        Scenario(f"p99 latency at {args.rate:.0f} req/s (1 recipient)", "ms", TARGET_P99_MS, False),
    ]
    started = time.monotonic()
    with BenchEnv() as env:
        gateway = env.gateway(free_port(), args.workers)
        baseline = env.baseline(free_port(), args.workers)
        client = "wrk" if wrk_path() and not args.python_client else "Python"
        print(
            f"vhost {env.vhost}, Redis {env.redis_url}, {args.workers} uvicorn worker(s) each, "
            f"load from {client}; load average {_load()} on {os.cpu_count()} cores",
            flush=True,
        )
        try:
            for server in (gateway, baseline):
                server.start()
            for server in (gateway, baseline):
                server.wait_ready()
            env.wait_topology()
            print(
                f"servers up: gateway :{gateway.port} (workers {gateway.worker_pids()}), "
                f"baseline :{baseline.port} (workers {baseline.worker_pids()})",
                flush=True,
            )
            if args.hold:
                # A throw-away key of a throw-away project, for driving load by hand meanwhile.
                print(f"holding {args.hold:.0f}s; key {env.api_key}", flush=True)
                time.sleep(args.hold)
            bench = Bench(args, env, gateway, baseline)
            print("warming up ...", flush=True)
            bench.warm_up()
            bench.run(scenarios)
        except Exception:
            print(f"\ngateway log tail:\n{gateway.tail()}", file=sys.stderr)
            raise
        finally:
            gateway.stop()
            baseline.stop()
    print_table(scenarios, args.rounds)
    single = scenarios[0]
    headroom = single.baseline.median / single.gateway.median if single.gateway.median else 0.0
    print(
        f"\nLoad generator headroom: it drove the baseline at {headroom:.1f}x the gateway's "
        "single-send rate, so the gateway's figure is the gateway's limit, not the generator's."
    )
    print(
        f"Run took {time.monotonic() - started:.0f}s; load average now {_load()} "
        "(anything else running on the machine lowers the figures)."
    )
    missed = [s.name for s in scenarios if not s.passed()]
    if missed:
        print(f"TARGETS MISSED: {', '.join(missed)}")
    if bench.errors:
        print("\nERRORS (the figures above are not trustworthy):", *bench.errors, sep="\n  ", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
