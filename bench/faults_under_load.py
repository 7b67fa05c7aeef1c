"""Faults under a saturating load: kill -9 each service, and restart RabbitMQ, while
clients send as fast as the gateway answers; then count what was lost, sent twice and
billed twice.

    .venv/bin/python -m bench.faults_under_load [--clients 32] [--before 8] [--after 20] [--json]

Starts a RabbitMQ node of its own (`tests/support/rabbit_cluster.py`, one node: the
machine's shared broker is never restarted), a redis-server of its own (append-only) and
the whole gateway with `rsms up`, the provider simulator's deduplication off (a resend
would show as a second delivery). `--clients` threads send single-recipient requests back
to back, every recipient new, each request retried with its Idempotency-Key until it is
accepted (as the API asks of clients). One gateway lives through every scenario in turn:

  ingest-worker  kill -9 of one of ingest's Granian workers (Granian starts another)
  dispatcher     kill -9 of the dispatcher (`rsms up` restarts it)
  ledger         kill -9 of the ledger
  webhooks       kill -9 of the webhook sender
  rabbitmq       kill -9 of the RabbitMQ node, started again 2 s later from its data

Each scenario is a window: `--before` seconds of load, the fault, then load until `--after`
seconds after it. At the end the load stops, the bench waits until the simulator has every
accepted recipient and the ledger has billed them, and prints per window: requests
accepted (a second), recipients, lost (accepted, never at the provider), sent twice,
billed twice, not billed, how long sending and accepting paused after the fault, and the
refusals the clients retried. Exit status 1 if anything was lost, sent or billed twice.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path

import httpx

from shared import accounts as store
from tests.support.fault_load import (
    BILLED_PER_RECIPIENT,
    SIM_ADMIN,
    DeliveryWatch,
    Load,
    delivered_references,
    delivery_times,
    longest_pause_after,
    ready,
    rsms_sql,
)
from tests.support.rabbit_cluster import RabbitCluster, free_port, rabbit_cluster, start_node
from tests.support.redis_server import RedisServer
from tests.support.rsms_up import PORT_NAMES, descendants, eventually, rsms_up_runner

VHOST = "rsms-faults"
SCENARIOS = ("ingest-worker", "dispatcher", "ledger", "webhooks", "rabbitmq")
SERVICE_OF = {"ingest-worker": "ingest", "dispatcher": "dispatcher", "ledger": "ledger", "webhooks": "webhooks"}


@dataclass
class Window:
    scenario: str
    started: float
    fault_at: float
    ended: float
    victim: str


@dataclass
class Figures:
    scenario: str
    victim: str
    requests_accepted: int
    accepted_per_s: float
    recipients: int
    lost: int
    sent_twice: int
    billed_twice: int
    not_billed: int
    sending_paused_s: float
    accepting_paused_s: float


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def command_words(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return []


def parent_of(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def service_pid(up_pid: int, service: str, *, worker: bool = False) -> int:
    """The service's process under `rsms up` (one of its workers when `worker`)."""
    mains = [p for p in descendants(up_pid) if parent_of(p) == up_pid and service in command_words(p)]
    if not mains:
        raise RuntimeError(f"no {service} process under rsms up")
    if not worker:
        return mains[0]
    workers = sorted(descendants(mains[0]))
    if not workers:
        raise RuntimeError(f"{service} has no worker processes")
    return workers[0]


def inflict(scenario: str, up_pid: int, cluster: RabbitCluster) -> str:
    """Does the scenario's fault; returns what it hit."""
    if scenario == "rabbitmq":
        node = cluster.nodes[0]
        assert node.pid is not None
        os.kill(node.pid, signal.SIGKILL)
        eventually(lambda: not node.alive, "the RabbitMQ node dead", timeout=30)
        time.sleep(2)
        start_node(node)
        return f"RabbitMQ node {node.name} (pid {node.pid} after its restart)"
    pid = service_pid(up_pid, SERVICE_OF[scenario], worker=scenario == "ingest-worker")
    os.kill(pid, signal.SIGKILL)
    return f"{SERVICE_OF[scenario]} pid {pid}"


def figures_of(
    window: Window,
    load: Load,
    found: Counter[str],
    billed: dict[tuple[str, str], int],
    delivered_at: list[float],
) -> Figures:
    accepted = {m: (r, t) for m, (r, t) in list(load.accepted.items()) if window.started <= t < window.ended}
    expected = load.expected(window.started, window.ended)
    pairs = [(m, recipient) for m, (recipients, _) in accepted.items() for recipient in recipients]
    return Figures(
        scenario=window.scenario,
        victim=window.victim,
        requests_accepted=len(accepted),
        accepted_per_s=round(len(accepted) / (window.ended - window.started), 1),
        recipients=len(expected),
        lost=sum(1 for reference in expected if reference not in found),
        sent_twice=sum(1 for reference in expected if found.get(reference, 0) > 1),
        billed_twice=sum(1 for pair in pairs if billed.get(pair, 0) > 1),
        not_billed=sum(1 for pair in pairs if pair not in billed),
        sending_paused_s=round(longest_pause_after(delivered_at, window.fault_at, window.ended), 1),
        accepting_paused_s=round(
            longest_pause_after([t for _, t in accepted.values()], window.fault_at, window.ended), 1
        ),
    )


def table(rows: list[Figures]) -> str:
    lines = [
        "| fault | accepted (per s) | recipients | lost | sent twice | billed twice | not billed "
        "| sending paused | accepting paused |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for f in rows:
        lines.append(
            f"| {f.scenario}: {f.victim} | {f.requests_accepted:,} ({f.accepted_per_s:,.0f}) | {f.recipients:,} "
            f"| {f.lost} | {f.sent_twice} | {f.billed_twice} | {f.not_billed} | {f.sending_paused_s} s "
            f"| {f.accepting_paused_s} s |"
        )
    return "\n".join(lines)


def run(args: argparse.Namespace, work: Path) -> tuple[list[Figures], dict[str, int]]:
    with rabbit_cluster(size=1) as cluster:
        cluster.add_vhost(VHOST)
        urls = cluster.urls(VHOST)
        redis = RedisServer(free_port(), work / "redis", appendonly=True).start()
        ports = {name: free_port() for name in PORT_NAMES}
        (work / "gateway").mkdir()
        limits = {
            "RSMS_REQUESTS_PER_MINUTE": "100000000",
            "RSMS_TAG_REQUESTS_PER_MINUTE": "100000000",
            "RSMS_CONCURRENT_REQUESTS": "100000",
        }
        try:
            with rsms_up_runner(work / "gateway", urls, redis.url, ports, limits) as start:
                up = start()
                up.wait_for(r"RSMS Gateway is up", timeout=180)
                with store.editing(work / "gateway" / "var" / "accounts.toml") as data:
                    _, key = store.issue_key(data, "demo", "live")
                    store.set_tag(data, "demo", "load", "RSMS")
                api, sim = f"http://127.0.0.1:{ports['ingest']}", f"http://127.0.0.1:{ports['sim']}"
                httpx.post(f"{sim}/admin/faults", headers=SIM_ADMIN, json={"deduplicate": False}).raise_for_status()
                headers = {"Authorization": f"Bearer {key}"}
                eventually(
                    lambda: httpx.post(f"{api}/api/v1/sms/send", headers=headers, content=b"{}").status_code == 400,
                    "the live key loaded",
                )
                time.sleep(2)  # every ingest worker re-reads the accounts file within a second
                ready_ports = {
                    "ingest": ports["ingest_ops"],
                    "dispatcher": ports["dispatcher"],
                    "ledger": ports["ledger"],
                    "webhooks": ports["webhooks"],
                }
                eventually(lambda: all(ready(p) for p in ready_ports.values()), "every service ready", timeout=120)

                load = Load(api, key, clients=args.clients)
                watch = DeliveryWatch(sim)
                watcher = threading.Thread(target=watch.run, daemon=True)
                load.start()
                watcher.start()
                windows: list[Window] = []
                for scenario in args.scenarios:
                    started = time.monotonic()
                    time.sleep(args.before)
                    fault_at = time.monotonic()
                    victim = inflict(scenario, up.process.pid, cluster)
                    say(f"{scenario}: killed {victim}; {len(load.accepted):,} requests accepted so far")
                    eventually(
                        lambda: all(ready(p) for p in ready_ports.values()), f"ready after {scenario}", timeout=180
                    )
                    say(f"  every service ready again after {time.monotonic() - fault_at:.1f} s")
                    time.sleep(max(0.0, args.after - (time.monotonic() - fault_at)))
                    windows.append(Window(scenario, started, fault_at, time.monotonic(), victim))
                load.finish()
                say(f"load stopped: {len(load.accepted):,} requests accepted, refusals retried: {dict(load.refused)}")

                expected = load.expected()
                try:
                    found = eventually(
                        lambda: (f := delivered_references(sim)) and expected.keys() <= f.keys() and f,
                        "every accepted recipient at the provider",
                        timeout=300,
                    )
                except AssertionError:
                    found = delivered_references(sim)
                say(f"at the provider: {len(found):,} references, {sum(found.values()):,} deliveries")

                def billed() -> dict[tuple[str, str], int]:
                    rows = rsms_sql(urls, BILLED_PER_RECIPIENT)
                    return {(r["message_id"], r["recipient"]): int(r["rows"]) for r in rows}

                try:
                    bill = eventually(lambda: (b := billed()) and len(b) >= len(expected) and b, "billed", timeout=300)
                except AssertionError:
                    bill = billed()
                watch.stop.set()
                watcher.join(10)
                delivered_at = delivery_times(watch.samples)
                rows = [figures_of(w, load, found, bill, delivered_at) for w in windows]
                return rows, dict(load.refused)
        finally:
            redis.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=32, help="sending threads, each back to back")
    parser.add_argument("--before", type=float, default=8.0, help="seconds of load before each fault")
    parser.add_argument("--after", type=float, default=20.0, help="seconds of load after each fault")
    parser.add_argument("--scenarios", type=lambda s: s.split(","), default=list(SCENARIOS))
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    unknown = set(args.scenarios) - set(SCENARIOS)
    if unknown:
        parser.error(f"unknown scenarios {sorted(unknown)}; known: {', '.join(SCENARIOS)}")
    say(f"load average {os.getloadavg()[0]:.1f}; {args.clients} clients; scenarios {', '.join(args.scenarios)}")
    with tempfile.TemporaryDirectory(prefix="rsms-faults-") as tmp:
        rows, refused = run(args, Path(tmp))
    if args.json:
        print(json.dumps({"scenarios": [asdict(r) for r in rows], "refused_then_retried": refused}))
    else:
        print(table(rows))
        print(f"\nRefusals the clients retried (same Idempotency-Key): {refused}")
        print(f"Load average at the end: {' '.join(f'{x:.1f}' for x in os.getloadavg())} (2 cores)")
    bad = [r for r in rows if r.lost or r.sent_twice or r.billed_twice or r.not_billed]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
