"""Issue 10's fault tests on the batched pipeline, under a saturating load, with their counts.

    .venv/bin/python -m bench.faults_under_load [--scenarios ingest-worker,dispatcher,ledger,webhooks,rabbitmq]
        [--clients 64] [--before 8] [--after 15] [--json]

One gateway (`rsms up`, started as `bench.saturation` starts it: `bench.peers_systems.Rsms`,
its own redis-server with append-only, `RSMS_PROVIDER_KIND=smpp` at the counting sink
`bench.smpp_sink`, which never deduplicates: a resend is a second submit to a number) on a
RabbitMQ node of the tool's own (`tests.support.rabbit_cluster`, one node, its own ports
and data; the machine's RabbitMQ on 5672 is shared and never restarted). The scenarios run
one after another on the same gateway, each after the previous one has drained (the
gateway recovering is part of what is tested):

- `ingest-worker`: kill -9 of one of ingest's uvicorn workers (its supervisor starts another);
- `dispatcher`, `ledger`, `webhooks`: kill -9 of the service (`rsms up` restarts it);
- `rabbitmq`: `rabbitmqctl stop_app`, `--rabbit-down` seconds, `start_app` of the node.

Per scenario: `--clients` closed-loop asyncio clients (keep-alive) send single-recipient
sends, each with a new number (`+479<scenario><6 digits>`) and an Idempotency-Key, and retry
a refused or failed request with the same key until it gets a 200 (or `--give-up` seconds);
the fault comes `--before` seconds into the load, the load stops `--after` seconds after the
fault is over (the process killed, or the node started again), then the tool waits until
every answered number is at the sink and billed. Counted: 200s (distinct message ids),
numbers at the sink, lost (200 but never at the sink), sent twice (at the sink more than
once), billed (`rsms sql` on `sms_outcomes FINAL`), billed twice, the longest pause in
submits after the fault ("sending resumed after"), accepted/s over the whole load.
Progress on stderr; a markdown table (or `--json`) on stdout. Exit status 1 when anything
was lost, sent or billed twice, or not billed. "held for operator": jobs the dispatcher
parked in `rsms.dispatch.dead` because a send was in flight when it died (outcome unknown:
parked rather than perhaps sent twice; `rsms dlq` shows them). Their numbers are the
operator's to decide, by design: one the sink never got counts as "held, not at sink",
not as lost, and none of them counts as not billed (the dispatcher bills no held job), so
the exit status means only what went wrong.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from bench.ingest_env import children, server_workers
from bench.ingest_loadgen import Connection, Target, _install_fast_loop
from bench.peers import Sink, say
from bench.peers_systems import MESSAGE, PEERS_DIR, TAG, Rsms, command_line, wait_until
from bench.saturation import load_average
from tests.support.rabbit_cluster import RabbitCluster, rabbit_cluster

SCENARIOS = ("ingest-worker", "dispatcher", "ledger", "webhooks", "rabbitmq")
RUN_DIR = PEERS_DIR.parent / "faults" / "rsms"
VHOST = "rsms-faults"


# --- counting (pure) ----------------------------------------------------------------------


def number(scenario: int, n: int) -> str:
    """The n-th number of a scenario: a valid Norwegian mobile number, a block per scenario."""
    return f"+479{scenario}{n:06d}"


def number_pattern(scenario: int) -> str:
    """A ClickHouse regular expression for a scenario's numbers, with or without the +."""
    return f"^\\\\+?479{scenario}[0-9]{{6}}$"


def digits(address: str) -> str:
    return address.lstrip("+")


def longest_pause_after(times: list[float], since: float, until: float) -> float:
    """The longest interval without an event between `since` and `until` (seconds)."""
    edges = [since, *sorted(t for t in times if since < t < until), until]
    return max(later - earlier for earlier, later in itertools.pairwise(edges))


@dataclass
class Counts:
    scenario: str
    answered_200: int  # requests answered 200
    message_ids: int  # distinct message ids among them
    at_sink: int  # distinct answered numbers at the sink
    lost: int  # answered 200, never at the sink
    sent_twice: int  # at the sink more than once
    billed: int  # answered numbers with a `sent` row
    not_billed: int
    billed_twice: int  # numbers with more than one `sent` row
    unanswered: int  # requests given up on (no 200 by `--give-up`)
    sent_without_200: int  # at the sink, but its request never got a 200 (given up on)
    held: int  # jobs the dispatcher parked in rsms.dispatch.dead (outcome unknown) in this scenario
    held_not_at_sink: int  # answered numbers of those jobs the sink never got (not lost)
    retries: int
    accepted_per_s: float
    sending_resumed_after_s: float
    restarted_after_s: float | None
    load_average: float

    @property
    def intact(self) -> bool:
        return self.lost == self.sent_twice == self.not_billed == self.billed_twice == 0


def count(
    scenario: str,
    accepted: dict[str, str],
    sink: dict[str, int],
    billed: dict[str, int],
    held_ids: frozenset[str] = frozenset(),
    **figures: Any,
) -> Counts:
    """`accepted`: number → message id of every 200; `sink`: submits per destination (with or
    without +); `billed`: `sent` rows per number; `held_ids`: message ids of the jobs held
    for an operator. A number the client never got a 200 for may still be sent (its request
    was accepted but the answer lost): it is not counted lost, but sending it twice still
    counts. A held job's numbers are neither lost nor unbilled: they wait for an operator."""
    at_sink = {digits(address): n for address, n in sink.items()}
    rows = {digits(address): n for address, n in billed.items()}
    wanted = {digits(address) for address in accepted}
    held = {digits(address) for address, message_id in accepted.items() if message_id in held_ids}
    return Counts(
        scenario=scenario,
        answered_200=len(accepted),
        message_ids=len(set(accepted.values())),
        at_sink=sum(1 for address in wanted if address in at_sink),
        lost=sum(1 for address in wanted - held if address not in at_sink),
        held_not_at_sink=sum(1 for address in held if address not in at_sink),
        sent_twice=sum(1 for n in at_sink.values() if n > 1),
        billed=sum(1 for address in wanted if address in rows),
        not_billed=sum(1 for address in wanted - held if address not in rows),
        billed_twice=sum(1 for n in rows.values() if n > 1),
        sent_without_200=sum(1 for address in at_sink if address not in wanted),
        **figures,
    )


COLUMNS = (
    ("scenario", "scenario"),
    ("200s", "answered_200"),
    ("message ids", "message_ids"),
    ("at sink", "at_sink"),
    ("lost", "lost"),
    ("sent twice", "sent_twice"),
    ("billed", "billed"),
    ("billed twice", "billed_twice"),
    ("not billed", "not_billed"),
    ("retries", "retries"),
    ("gave up", "unanswered"),
    ("sent without 200", "sent_without_200"),
    ("held for operator", "held"),
    ("held, not at sink", "held_not_at_sink"),
    ("accepted/s", "accepted_per_s"),
    ("sending resumed after", "sending_resumed_after_s"),
    ("restarted after", "restarted_after_s"),
    ("load avg", "load_average"),
)


def cell(value: object) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:,.1f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def table(rows: list[Counts]) -> str:
    head = "| " + " | ".join(title for title, _ in COLUMNS) + " |"
    rule = "| --- |" + " ---: |" * (len(COLUMNS) - 1)
    lines = ["| " + " | ".join(cell(getattr(row, name)) for _, name in COLUMNS) + " |" for row in rows]
    return "\n".join([head, rule, *lines])


# --- the load -----------------------------------------------------------------------------


@dataclass
class Load:
    """Closed-loop clients on raw keep-alive HTTP/1.1 (`bench.ingest_loadgen.Connection`: httpx
    took half a core for 70 requests/s here, the client would have been the limit)."""

    port: int
    key: str
    scenario: int
    give_up: float
    timeout: float
    accepted: dict[str, str] = field(default_factory=dict)  # number → message id
    retries: int = 0
    unanswered: int = 0
    stopping: asyncio.Event = field(default_factory=asyncio.Event)
    numbers: itertools.count[int] = field(default_factory=itertools.count)

    async def send(self, connection: Connection | None, request: bytes) -> tuple[Connection | None, str | None]:
        """One attempt: the connection to use next and the message id of a 200."""
        try:
            if connection is None:
                connection = await asyncio.wait_for(Connection.open("127.0.0.1", self.port), self.timeout)
            status, body = await asyncio.wait_for(connection.exchange(request), self.timeout)
        except (
            OSError,
            asyncio.IncompleteReadError,
            asyncio.LimitOverrunError,
            TimeoutError,
            RuntimeError,
            ValueError,
        ):
            if connection is not None:
                connection.close()
            return None, None
        return connection, (json.loads(body)["data"]["messageId"] if status == 200 else None)

    async def client(self) -> None:
        target = Target("127.0.0.1", self.port, "/api/v1/sms/send", b"", self.key)
        connection: Connection | None = None
        while not self.stopping.is_set():
            recipient = number(self.scenario, next(self.numbers))
            body = json.dumps({"tag": TAG, "recipients": [recipient], "message": MESSAGE}).encode()
            request = replace(target, body=body).request_bytes(f"Idempotency-Key: {uuid.uuid4().hex}\r\n")
            deadline = time.monotonic() + self.give_up
            while True:  # the same key until a 200, even while stopping
                connection, message_id = await self.send(connection, request)
                if message_id is not None:
                    self.accepted[recipient] = message_id
                    break
                if time.monotonic() > deadline:
                    self.unanswered += 1
                    break
                self.retries += 1
                await asyncio.sleep(0.2)
        if connection is not None:
            connection.close()


async def watch_sink(sink: Sink, until: asyncio.Event, times: list[float]) -> None:
    """When the sink's submit count went up (to see sending pause and resume)."""
    last = 0
    while not until.is_set():
        submits = (await asyncio.to_thread(sink.stats)).submits
        if submits > last:
            times.append(time.monotonic())
            last = submits
        await asyncio.sleep(0.2)


# --- the faults ---------------------------------------------------------------------------


def service_pid(rsms: Rsms, name: str) -> int | None:
    """The service's own process: a child of `rsms up` whose command line names it."""
    assert rsms.up is not None
    return next((pid for pid in children(rsms.up.pid) if name in command_line(pid).split()), None)


def victim(rsms: Rsms, scenario: str) -> tuple[int, str]:
    """The PID to kill and the service whose PID shows the restart."""
    if scenario == "ingest-worker":
        server = service_pid(rsms, "ingest")
        # A worker, not multiprocessing's resource tracker (a child of the server too).
        workers = server_workers(server) if server is not None else []
        if not workers:
            raise RuntimeError("no uvicorn worker under ingest")
        return workers[0], "ingest"
    pid = service_pid(rsms, "dispatcher" if scenario == "dispatcher" else scenario)
    if pid is None:
        raise RuntimeError(f"no {scenario} process under rsms up")
    return pid, scenario


def inject(rsms: Rsms, cluster: RabbitCluster, scenario: str, rabbit_down: float) -> float | None:
    """Does the fault; returns how long until a new process took the killed one's place."""
    started = time.monotonic()
    if scenario == "rabbitmq":
        cluster.ctl("stop_app")
        time.sleep(rabbit_down)
        cluster.ctl("start_app")
        return None
    pid, service = victim(rsms, scenario)
    server = service_pid(rsms, "ingest")
    workers = len(server_workers(server)) if server is not None else 0
    os.kill(pid, signal.SIGKILL)
    say(f"  kill -9 {pid} ({scenario})")

    def replaced() -> bool:
        if scenario == "ingest-worker":
            return server is not None and len([p for p in server_workers(server) if p != pid]) >= workers
        now = service_pid(rsms, service)
        return now is not None and now != pid

    wait_until(replaced, f"{scenario} restarted", timeout=120)
    return round(time.monotonic() - started, 1)


# --- reading the outcome ------------------------------------------------------------------


def billed_rows(amqp_url: str, scenario: int) -> dict[str, int]:
    """`sent` rows per number of a scenario, through the ledger's query path (`rsms sql`)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RSMS_")}
    env.update(RSMS_AMQP_URL=amqp_url, PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    statement = (
        "SELECT recipient, count() AS c FROM rsms.sms_outcomes FINAL WHERE status = 'sent' AND NOT test "
        f"AND match(recipient, '{number_pattern(scenario)}') GROUP BY recipient"
    )
    done = subprocess.run(
        [sys.executable, "-m", "cli", "sql", "--json", "--limit", "1000000", statement],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    if done.returncode != 0:
        raise RuntimeError(f"rsms sql: {done.stderr.strip()[-500:]}")
    return {row["recipient"]: int(row["c"]) for row in json.loads(done.stdout)["rows"]}


def held_message_ids(amqp_url: str) -> frozenset[str]:
    """Message ids of the jobs in the dispatcher's dead-letter queue (`rsms dlq list`, which
    takes nothing off it)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RSMS_")}
    env.update(RSMS_AMQP_URL=amqp_url, PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    done = subprocess.run(
        [sys.executable, "-m", "cli", "dlq", "list", "--json"], env=env, capture_output=True, text=True, timeout=120
    )
    if done.returncode != 0:
        raise RuntimeError(f"rsms dlq list: {done.stderr.strip()[-500:]}")
    return frozenset(str(row["message_id"]) for row in json.loads(done.stdout) if row.get("message_id"))


def dead_jobs(cluster: RabbitCluster) -> int:
    """Jobs in the dispatcher's dead-letter queue (held for an operator)."""
    for line in cluster.ctl(
        "list_queues", "-p", VHOST, "name", "messages", "--quiet", "--no-table-headers"
    ).splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[0] == "rsms.dispatch.dead":
            return int(parts[1])
    return 0


def drain(
    sink: Sink, amqp_url: str, scenario: int, accepted: dict[str, str], cap: float, stall: float
) -> dict[str, int]:
    """Waits until every answered number is at the sink and billed, or neither the sink nor
    the ledger got anything new for `stall` seconds (what is missing then is lost, or held for
    an operator: the dispatcher bills no held job), or `cap` seconds."""
    wanted = {digits(address) for address in accepted}
    started = moved = time.monotonic()
    billed: dict[str, int] = {}
    seen = (-1, -1)
    while time.monotonic() - started < cap:
        at_sink = {digits(address) for address in sink.destinations()}
        if (len(at_sink), len(billed)) != seen:
            seen, moved = (len(at_sink), len(billed)), time.monotonic()
        if time.monotonic() - moved > stall:
            break  # what is missing now is lost, or held for an operator (sent or not, unbilled)
        if wanted <= at_sink or time.monotonic() - moved > stall / 2:
            billed = billed_rows(amqp_url, scenario)
            if wanted <= {digits(address) for address in billed}:
                break
        waited = time.monotonic() - started
        done = f"{len(wanted & at_sink):,} of {len(wanted):,} at the sink, {len(billed):,} billed"
        say(f"  draining {waited:4.0f} s: {done}")
        time.sleep(3)
    time.sleep(2)  # a late second submit or row would still show
    return billed_rows(amqp_url, scenario)


async def run_scenario(rsms: Rsms, sink: Sink, cluster: RabbitCluster, amqp_url: str, index: int, name: str,
                       args: argparse.Namespace) -> Counts:  # fmt: skip
    await asyncio.to_thread(sink.reset)
    dead_before = await asyncio.to_thread(dead_jobs, cluster)
    load = Load(rsms.port, rsms.key, index, args.give_up, args.request_timeout)
    submits: list[float] = []
    watching = asyncio.Event()
    started = time.monotonic()
    clients = [asyncio.create_task(load.client()) for _ in range(args.clients)]
    watcher = asyncio.create_task(watch_sink(sink, watching, submits))
    for _ in range(int(args.before)):
        await asyncio.sleep(1)
    say(f"  {len(load.accepted):,} accepted before the fault ({len(load.accepted) / args.before:,.0f}/s); {name} …")
    fault_at = time.monotonic()
    restarted = await asyncio.to_thread(inject, rsms, cluster, name, args.rabbit_down)
    recovered_at = time.monotonic()  # the load goes on `--after` seconds after the fault is over
    while time.monotonic() - recovered_at < args.after:
        await asyncio.sleep(min(5.0, args.after - (time.monotonic() - recovered_at)))
        say(f"  {time.monotonic() - fault_at:4.0f} s after the fault: {len(load.accepted):,} accepted, "
            f"{len(submits) and (await asyncio.to_thread(sink.stats)).submits:,} at the sink")  # fmt: skip
    load_end = time.monotonic()
    load.stopping.set()
    await asyncio.gather(*clients)
    watching.set()
    await watcher
    say(f"  load stopped: {len(load.accepted):,} answered 200, {load.retries:,} retries; draining …")
    billed = await asyncio.to_thread(drain, sink, amqp_url, index, load.accepted, args.drain_cap, args.stall)
    return count(
        name,
        load.accepted,
        await asyncio.to_thread(sink.destinations),
        billed,
        await asyncio.to_thread(held_message_ids, amqp_url),
        unanswered=load.unanswered,
        retries=load.retries,
        accepted_per_s=round(len(load.accepted) / (load_end - started), 1),
        sending_resumed_after_s=round(longest_pause_after(submits, fault_at, load_end), 1),
        restarted_after_s=restarted,
        held=await asyncio.to_thread(dead_jobs, cluster) - dead_before,
        load_average=round(os.getloadavg()[0], 1),
    )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scenarios", default=",".join(SCENARIOS), help="Comma-separated, in this order.")
    parser.add_argument("--clients", type=int, default=64, help="Concurrent closed-loop clients.")
    parser.add_argument("--before", type=float, default=8.0, help="Seconds of load before the fault.")
    parser.add_argument("--after", type=float, default=15.0, help="Seconds of load after the fault.")
    parser.add_argument("--rabbit-down", type=float, default=5.0, help="Seconds between stop_app and start_app.")
    parser.add_argument("--give-up", type=float, default=180.0, help="A request's retries end after this.")
    parser.add_argument("--request-timeout", type=float, default=30.0)
    parser.add_argument("--drain-cap", type=float, default=600.0, help="Longest wait for sink and ledger.")
    parser.add_argument("--stall", type=float, default=30.0, help="Drained when the sink got nothing new this long.")
    parser.add_argument("--set", action="append", default=[], metavar="RSMS_X=VALUE", help="An RSMS setting.")
    parser.add_argument("--json", action="store_true", help="One JSON document instead of the table.")
    args = parser.parse_args(argv)
    unknown = set(args.scenarios.split(",")) - set(SCENARIOS)
    if unknown:
        parser.error(f"unknown scenarios: {', '.join(sorted(unknown))}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    _install_fast_loop()  # the client must not be the limit
    load_before = load_average()
    say(f"load average before: {load_before}")
    rows: list[Counts] = []
    sink = Sink()
    with rabbit_cluster(size=1) as cluster:
        cluster.add_vhost(VHOST)
        amqp_url = cluster.urls(VHOST)
        say(f"own RabbitMQ node {cluster.nodes[0].name} on port {cluster.nodes[0].amqp_port}")
        # `rsms sql` answers at most RSMS_LEDGER_SQL_MAX_ROWS rows (10,000): the tool reads a row a number.
        settings = {"RSMS_LEDGER_SQL_MAX_ROWS": "1000000", **dict(item.split("=", 1) for item in args.set)}
        rsms = Rsms(sink.port, settings, directory=RUN_DIR, amqp_url=amqp_url)
        try:
            sink.start()
            say(f"SMPP sink on port {sink.port}; starting RSMS (rsms up in {RUN_DIR}) …")
            rsms.start()
            for index, name in enumerate(args.scenarios.split(","), start=1):
                say(f"scenario {index} {name}: {args.clients} clients, fault after {args.before:g} s, "
                    f"load until {args.after:g} s after it")  # fmt: skip
                rows.append(asyncio.run(run_scenario(rsms, sink, cluster, amqp_url, index, name, args)))
                say("  " + json.dumps(asdict(rows[-1])))
        except Exception:
            tail = (rsms.dir / "up.log").read_text(errors="replace").splitlines()[-30:] if rsms.up else []
            say("rsms up's log, last lines:\n" + "\n".join(tail))
            raise
        finally:
            rsms.stop()
            sink.stop()
    load_after = load_average()
    if args.json:
        print(json.dumps({"load_average_before": load_before, "load_average_after": load_after,
                          "scenarios": [asdict(row) for row in rows]}, indent=2))  # fmt: skip
    else:
        print(f"load average before {load_before}, after {load_after}\n\n{table(rows)}")
    return 0 if all(row.intact for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
