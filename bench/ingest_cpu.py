"""CPU time the gateway spends per accepted 1000-recipient send.

Throughput on a shared machine swings by a factor of three from one run to the next
(other processes take the cores), so a change that costs a few per cent cannot be seen in
`bench.ingest_send`'s recipients/s. The CPU time the gateway's own processes use per
request barely depends on what else runs: this starts `rsms ingest` exactly as
`bench.ingest_send` does (its own vhost, Redis and accounts), drives it with `wrk` with the
ingest bench's 1000-recipient body, and divides the CPU seconds of the server and its
workers (`/proc/<pid>/stat`) by the requests answered 200.

To compare two versions, run it from each checkout in turn, several times, interleaved:

    .venv/bin/python -m bench.ingest_cpu [--rounds 3] [--seconds 5] [--connections 8]

or from one checkout, the gateway of another (`--root /work/main`) in turn. With the bench's
own redis-server (no RSMS_BENCH_REDIS_URL) its CPU per send is reported too.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
from pathlib import Path

from bench.ingest_env import BenchEnv, free_port
from bench.ingest_loadgen import Target, run_wrk, wrk_path
from bench.ingest_send import BULK_RECIPIENTS, send_body


def cpu_seconds(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])  # utime + stime, in clock ticks
    return total / os.sysconf("SC_CLK_TCK")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument(
        "--recipients", type=int, default=BULK_RECIPIENTS, help="recipients a request (1: single-recipient sends)"
    )
    parser.add_argument(
        "--broker-pid",
        type=int,
        default=0,
        help="also report this process's CPU per request (RabbitMQ's beam.smp; shared, so only indicative)",
    )
    parser.add_argument(
        "--root",
        type=Path,
        default=None,
        help="run the gateway of this checkout (with its own .venv), e.g. main's, to compare it",
    )
    args = parser.parse_args()
    if wrk_path() is None:
        print("wrk is not installed: apt-get install -y wrk", file=sys.stderr)
        return 1
    with BenchEnv() as env:
        root = args.root.resolve() if args.root else Path(__file__).resolve().parents[1]
        gateway = env.gateway(free_port(), args.workers, root)
        try:
            gateway.start()
            gateway.wait_ready()
            env.wait_topology()
            assert gateway.process is not None
            pids = [gateway.process.pid, *gateway.worker_pids()]
            target = Target("127.0.0.1", gateway.port, "/api/v1/sms/send", send_body(args.recipients), env.api_key)
            run_wrk(target, seconds=2, connections=args.connections, threads=1)  # warm-up
            env.purge_queues()
            env.reset_redis()
            figures = []
            broker_figures = []
            # The bench's own redis-server serves this gateway alone: its CPU is the send's.
            redis_pids = [env.redis_pid] if env.redis_pid else []
            redis_figures = []
            for round_no in range(1, args.rounds + 1):
                before = cpu_seconds(pids)
                broker_before = cpu_seconds([args.broker_pid]) if args.broker_pid else 0.0
                redis_before = cpu_seconds(redis_pids)
                result = run_wrk(target, seconds=args.seconds, connections=args.connections, threads=1)
                used = cpu_seconds(pids) - before
                broker_used = cpu_seconds([args.broker_pid]) - broker_before if args.broker_pid else 0.0
                redis_used = cpu_seconds(redis_pids) - redis_before
                if result.failed or not result.ok:
                    print(f"round {round_no}: {result.failed} failed, {result.ok} ok", file=sys.stderr)
                    return 1
                figures.append(used / result.ok * 1000)
                broker_figures.append(broker_used / result.ok * 1000)
                redis_figures.append(redis_used / result.ok * 1000)
                messages, jobs = env.take_queued()
                broker = f" (+ broker {broker_figures[-1]:.3f})" if args.broker_pid else ""
                broker += f" (+ redis {redis_figures[-1]:.3f})" if redis_pids else ""
                print(
                    f"  round {round_no}: {figures[-1]:.3f}{broker} CPU ms per {args.recipients}-recipient send; "
                    f"{result.ok / args.seconds:.0f} req/s; {jobs} jobs in {messages} broker messages",
                    flush=True,
                )
                env.reset_redis()
        finally:
            gateway.stop()
    print(
        f"median {statistics.median(figures):.3f} CPU ms per {args.recipients}-recipient send"
        + (f" (+ broker {statistics.median(broker_figures):.3f})" if args.broker_pid else "")
        + (f" (+ redis {statistics.median(redis_figures):.3f})" if redis_pids else "")
        + f" ({root}); load average {os.getloadavg()[0]:.1f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
