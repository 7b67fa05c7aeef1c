"""Ledger throughput: recipient rows per second from the broker into ClickHouse.

Each round publishes `--events` outcome events of `--recipients` recipients each to the
outcomes exchange (while no ledger consumes), then starts the ledger in this process and
times until every row is in ClickHouse (the ledger's rows-written counter, which moves once
an insert has returned, checked with a count afterwards): it is the rate at which a ledger
drains a backlog, from the moment its consumers start (after AMQP connect, topology and
schema check) to the last row visible, covering delivery, validation, batching and
inserting. Publishing is not timed: it measures the publisher, not the ledger.

The baseline is a bare clickhouse-connect `insert(column_oriented=True)` of the same rows
into a twin table, in batches of the ledger's own mean batch size, in the same run and the
same chDB, its columns built before the clock starts: the insert a client of these rows
would write. (The ledger itself sends the validated events as JSON and lets a
materialized view fan them out into rows; a third line times that way of inserting bare,
without the broker, for reference.) Medians over `--rounds`, the order of ledger and bare
alternating.

The ledger's time-based flush (`ledger_batch_seconds`) does not weigh on the result as long
as every flush has `ledger_batch_rows` waiting, as with the default 1,000-recipient events;
with a small last batch the drain would include up to that wait.

    .venv/bin/python -m bench.ledger_ingest [--rounds 3] [--events 200] [--recipients 1000]
    .venv/bin/python -m bench.ledger_ingest --events 20000 --recipients 1 --jobs   # issue 10's shape

`--loop asyncio` runs it on asyncio's loop (as the ledger did before it moved to uvloop).
`--jobs` publishes each event's accepted job as well (two deliveries a message, as in
production). Each round also prints the ledger's CPU per event (the bench process's CPU
time while it drains, chDB's threads included; nothing else runs in it meanwhile) and the
load average. `--profile FILE` records the first round's drain with py-spy (raw collapsed
stacks, for `bench.profile_summary` or flamegraph tools).

Runs in a throw-away RabbitMQ vhost and a temp chDB directory; leaves nothing behind.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import shutil
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
from typing import Any

import msgspec
import uvloop
from faststream.rabbit import RabbitBroker

from cli.table import print_table
from services.ledger.app import build_app
from services.ledger.clickhouse import open_client
from services.ledger.metrics import LedgerMetrics
from services.ledger.rows import OutcomeEventBody
from services.ledger.schema import (
    OUTCOME_COLUMNS,
    OUTCOME_EVENT_INSERT_SETTINGS,
    OUTCOME_EVENTS_TABLE,
    OUTCOME_ROWS_VIEW,
    OUTCOMES_TABLE,
    REQUESTS_TABLE,
    SCHEMA_MIGRATIONS,
    RowsView,
    view_statements,
)
from services.ledger.settings import LedgerSettings
from shared.contracts import OutcomeEvent, RecipientOutcome, SmsJob
from shared.log import configure_logging
from shared.topology import ACCEPTED_EXCHANGE, OUTCOMES_EXCHANGE, declare_topology

DATABASE = "rsms_bench"
BARE_TABLE = "bare_outcomes"
BARE_EVENTS_TABLE = "bare_outcome_events"
BARE_VIEW = "bare_outcome_rows"
BASE_AMQP = "amqp://guest:guest@localhost:5672/"
ROUND_TIMEOUT_SECONDS = 300
# The ledger's own mirror of the contract, for the bare insert's columns (outside the clock).
decode_outcome = msgspec.json.Decoder(OutcomeEventBody).decode


def rabbitmqctl(*args: str) -> None:
    subprocess.run(["rabbitmqctl", "-q", *args], check=True, capture_output=True, timeout=60)


def make_events(count: int, recipients: int) -> list[bytes]:
    return [outcome for outcome, _ in make_messages(count, recipients)]


def make_messages(count: int, recipients: int) -> list[tuple[bytes, bytes]]:
    """(outcome event, accepted job) bodies of `count` messages."""
    now = datetime.now(UTC)
    bodies = []
    for i in range(count):
        message_id = uuid.uuid4()
        numbers = [f"+47{40_000_000 + j}" for j in range(recipients)]
        job = SmsJob(
            message_id=message_id,
            project=f"bench-{i % 5}",
            key_id="bench",
            tag=f"tag-{i % 7}",
            sender="Bench",
            recipients=numbers,
            message="Bench message",
            encoding="GSM-7",
            segments=1,
            prices={"NO": Decimal("0.67")},
            default_price=Decimal("0.80"),
            currency="NOK",
            estimated_cost=Decimal("0.67") * recipients,
            test=False,
            store_body=False,
            accepted_at=now,
        )
        event = OutcomeEvent(
            event_id=uuid.uuid5(message_id, "1"),
            message_id=message_id,
            project=f"bench-{i % 5}",
            tag=f"tag-{i % 7}",
            sender="Bench",
            test=False,
            currency="NOK",
            attempt=1,
            occurred_at=now,
            outcomes=[
                RecipientOutcome(
                    recipient=f"+47{40_000_000 + j}",
                    country="NO",
                    status="sent",
                    segments=1 + j % 3,
                    cost=Decimal("0.67") * (1 + j % 3),
                    provider_reference=f"ref-{i}-{j}",
                )
                for j in range(recipients)
            ],
        )
        bodies.append((event.model_dump_json().encode(), job.model_dump_json().encode()))
    return bodies


def outcome_columns(body: bytes) -> list[list[Any]]:
    """The rows of one outcome event, column by column in the table's order."""
    event = decode_outcome(body)
    outcomes = event.outcomes
    n = len(outcomes)
    return [
        [event.project] * n,
        [event.message_id] * n,
        [o.recipient for o in outcomes],
        [event.replay] * n,
        [event.attempt] * n,
        [o.country for o in outcomes],
        [o.status for o in outcomes],
        [o.segments for o in outcomes],
        [o.cost for o in outcomes],
        [event.currency] * n,
        [event.tag] * n,
        [event.sender] * n,
        [event.test] * n,
        [o.provider_reference for o in outcomes],
        [o.error_code for o in outcomes],
        [o.error_message for o in outcomes],
        [event.event_id] * n,
        [event.occurred_at] * n,
    ]


def batched(bodies: list[bytes], batch_rows: int) -> list[list[bytes]]:
    """The bodies in groups of at least `batch_rows` rows (the ledger's mean batch)."""
    batches: list[list[bytes]] = [[]]
    rows = 0
    for body in bodies:
        batches[-1].append(body)
        rows += len(decode_outcome(body).outcomes)
        if rows >= batch_rows:
            batches.append([])
            rows = 0
    return [batch for batch in batches if batch]


def bare_insert(client: Any, bodies: list[bytes], batch_rows: int) -> float:
    """Seconds to insert the rows of `bodies` with plain clickhouse-connect column inserts.

    The columns are built before the clock starts: this is the insert alone.
    """
    batches: list[list[list[Any]]] = []
    for group in batched(bodies, batch_rows):
        columns: list[list[Any]] = [[] for _ in OUTCOME_COLUMNS]
        for body in group:
            for merged, column in zip(columns, outcome_columns(body), strict=True):
                merged.extend(column)
        batches.append(columns)
    started = time.perf_counter()
    for columns in batches:
        client.insert(
            f"{DATABASE}.{BARE_TABLE}",
            columns,
            column_names=list(OUTCOME_COLUMNS),
            column_oriented=True,
        )
    return time.perf_counter() - started


def bare_raw_insert(client: Any, bodies: list[bytes], batch_rows: int) -> float:
    """Seconds to `raw_insert` the bodies through a twin of the ledger's events view."""
    blocks = [b"\n".join(group) for group in batched(bodies, batch_rows)]
    started = time.perf_counter()
    for block in blocks:
        client.raw_insert(
            f"{DATABASE}.{BARE_EVENTS_TABLE}",
            insert_block=block,
            fmt="JSONEachRow",
            settings=OUTCOME_EVENT_INSERT_SETTINGS,
        )
    return time.perf_counter() - started


def create_bare_tables(client: Any) -> None:
    """Twins of the ledger's outcome table and of its events table and view."""
    client.command(f"CREATE TABLE {DATABASE}.{BARE_TABLE} AS {DATABASE}.{OUTCOMES_TABLE}")
    client.command(f"CREATE TABLE {DATABASE}.{BARE_EVENTS_TABLE} AS {DATABASE}.{OUTCOME_EVENTS_TABLE}")
    view = next(
        step
        for migration in SCHEMA_MIGRATIONS
        for step in migration.steps
        if isinstance(step, RowsView) and step.name == OUTCOME_ROWS_VIEW
    )
    bare_view = dataclasses.replace(view, name=BARE_VIEW, source=BARE_EVENTS_TABLE, target=BARE_TABLE)
    for statement in view_statements(bare_view, DATABASE, None):
        client.command(statement)


@dataclass(frozen=True)
class Drain:
    seconds: float
    cpu_seconds: float
    mean_batch_rows: int


async def ledger_round(
    settings: LedgerSettings,
    bodies: list[bytes],
    rows: int,
    jobs: list[bytes] | None = None,
    profile: Path | None = None,
) -> Drain:
    """Time and CPU until the ledger has written every row, and its mean batch size in rows."""
    jobs = jobs or []
    async with RabbitBroker(settings.amqp_url, logger=None) as broker:
        await declare_topology(broker)
        for body in bodies:
            await broker.publish(body, exchange=OUTCOMES_EXCHANGE, persist=True, content_type="application/json")
        for body in jobs:
            await broker.publish(body, exchange=ACCEPTED_EXCHANGE, persist=True, content_type="application/json")
    metrics = LedgerMetrics()
    app = build_app(settings, metrics)
    consuming_from: list[tuple[float, float]] = []
    # Runs after the ledger's own start hook (ClickHouse open, schema checked, topology
    # declared) and before the broker starts its consumers: the clock starts at consumption.
    app.on_startup(lambda: consuming_from.append((time.perf_counter(), time.process_time())))
    spy = start_profiler(profile) if profile else None
    await app.start()
    started, cpu_started = consuming_from[0]
    try:
        deadline = started + ROUND_TIMEOUT_SECONDS
        while written(metrics) < rows or written(metrics, REQUESTS_TABLE) < len(jobs):
            if time.perf_counter() > deadline:
                raise TimeoutError(f"ledger wrote {written(metrics)} of {rows} rows")
            await asyncio.sleep(0.005)
        seconds = time.perf_counter() - started
        cpu_seconds = time.process_time() - cpu_started
    finally:
        if spy is not None:
            stop_profiler(spy)
        await app.stop()
    batches = metrics.registry.get_sample_value("rsms_ledger_batch_rows_count") or 1.0
    total = written(metrics) + written(metrics, REQUESTS_TABLE)
    return Drain(seconds, cpu_seconds, max(1, round(total / batches)))


def load_average() -> str:
    return " ".join(f"{value:.2f}" for value in os.getloadavg())


def start_profiler(output: Path) -> subprocess.Popen[bytes]:
    """py-spy on this process (the ledger runs in it), raw collapsed stacks into `output`."""
    spy = subprocess.Popen(
        [
            shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy"),
            "record",
            "--pid",
            str(os.getpid()),
            "--format",
            "raw",
            "--threads",
            "-o",
            str(output),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(1.0)  # attached before the clock starts
    return spy


def stop_profiler(spy: subprocess.Popen[bytes]) -> None:
    spy.send_signal(2)  # SIGINT: py-spy writes its file and exits
    spy.wait(60)


def written(metrics: LedgerMetrics, table: str = OUTCOMES_TABLE) -> float:
    value = metrics.registry.get_sample_value("rsms_ledger_rows_written_total", {"table": table})
    return value or 0.0


async def main(args: argparse.Namespace) -> None:
    vhost = f"rsms-bench-{uuid.uuid4().hex[:8]}"
    data = Path(tempfile.mkdtemp(prefix="rsms-bench-chdb-"))
    rabbitmqctl("add_vhost", vhost)
    rabbitmqctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
    try:
        settings = LedgerSettings(
            amqp_url=f"{BASE_AMQP}{vhost}",
            clickhouse_dsn=f"chdb://{data}",
            clickhouse_database=DATABASE,
            ledger_batch_rows=args.batch_rows,
            ledger_prefetch=args.prefetch,
            ledger_http_port=0,
            log_level="WARNING",
            log_format="console",
        )
        await run_rounds(args, settings)
    finally:
        rabbitmqctl("delete_vhost", vhost)
        shutil.rmtree(data, ignore_errors=True)


async def run_rounds(args: argparse.Namespace, settings: LedgerSettings) -> None:
    rows = args.events * args.recipients
    # Warm-up: the ledger creates the schema; the twin table copies its definition.
    warm = make_events(2, args.recipients)
    await ledger_round(settings, warm, 2 * args.recipients)
    client = open_client(settings.clickhouse_dsn)
    create_bare_tables(client)
    bare_insert(client, warm, args.batch_rows)
    bare_raw_insert(client, warm, args.batch_rows)

    results = []
    batch_rows = args.batch_rows
    print(f"load average at start: {load_average()}", flush=True)
    for number in range(1, args.rounds + 1):
        messages = make_messages(args.events, args.recipients)
        bodies = [outcome for outcome, _ in messages]
        jobs = [job for _, job in messages] if args.jobs else []
        events = len(bodies) + len(jobs)
        # Alternate which goes first, so background merges of the other's parts and
        # anything else on the machine weigh on both alike.
        if number % 2 == 0:
            bare_seconds = bare_insert(client, bodies, batch_rows)
            raw_seconds = bare_raw_insert(client, bodies, batch_rows)
        before = client.command(f"SELECT count() FROM {DATABASE}.{OUTCOMES_TABLE}")
        profile = args.profile if number == 1 else None
        drain = await ledger_round(settings, bodies, rows, jobs, profile)
        ledger_seconds, ledger_batch = drain.seconds, drain.mean_batch_rows
        after = client.command(f"SELECT count() FROM {DATABASE}.{OUTCOMES_TABLE}")
        assert after - before == rows, f"ledger wrote {after - before} rows, expected {rows}"
        if number % 2 == 1:
            # The bare insert gets the ledger's own batch size: same rows, same inserts.
            batch_rows = ledger_batch
            bare_seconds = bare_insert(client, bodies, batch_rows)
            raw_seconds = bare_raw_insert(client, bodies, batch_rows)
        cpu_ms = 1000 * drain.cpu_seconds / events
        results.append(
            (rows / ledger_seconds, rows / bare_seconds, rows / raw_seconds, events / ledger_seconds, cpu_ms)
        )
        print(
            f"round {number}: ledger {rows / ledger_seconds:,.0f} rows/s, {events / ledger_seconds:,.0f} events/s, "
            f"{cpu_ms:.3f} CPU-ms/event{' (profiled)' if profile else ''} "
            f"(mean batch {ledger_batch:,} rows), bare insert {rows / bare_seconds:,.0f} rows/s, "
            f"bare raw_insert {rows / raw_seconds:,.0f} rows/s (batches of {batch_rows:,})",
            flush=True,
        )

    ledger_rate = statistics.median(r[0] for r in results)
    bare_rate = statistics.median(r[1] for r in results)
    raw_rate = statistics.median(r[2] for r in results)
    print()
    print(
        f"{args.rounds} rounds of {args.events} events x {args.recipients} recipients "
        f"= {rows:,} rows{' (and as many accepted jobs)' if args.jobs else ''}; "
        f"ledger_batch_rows {args.batch_rows:,}; prefetch {args.prefetch}; load average at end: {load_average()}"
    )
    print(
        f"ledger median {statistics.median(r[3] for r in results):,.0f} events/s, "
        f"{statistics.median(r[4] for r in results):.3f} CPU-ms/event"
    )
    print_table(
        ["path", "median rows/s", "target"],
        [
            ["ledger: broker -> ClickHouse", f"{ledger_rate:,.0f}", ">= 100,000"],
            ["bare clickhouse-connect insert", f"{bare_rate:,.0f}", ""],
            ["ratio ledger / bare", f"{ledger_rate / bare_rate:.2f}", ">= 0.80"],
            ["(bare raw_insert of the bodies)", f"{raw_rate:,.0f}", ""],
            ["(ratio ledger / bare raw_insert)", f"{ledger_rate / raw_rate:.2f}", ""],
        ],
    )


def parse_args() -> argparse.Namespace:
    defaults = LedgerSettings.model_fields
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--events", type=int, default=200)
    parser.add_argument("--recipients", type=int, default=1000)
    parser.add_argument("--batch-rows", type=int, default=defaults["ledger_batch_rows"].default)
    parser.add_argument("--prefetch", type=int, default=defaults["ledger_prefetch"].default)
    parser.add_argument("--jobs", action="store_true", help="publish each event's accepted job as well")
    parser.add_argument("--profile", type=Path, help="py-spy raw stacks of the first round's drain")
    parser.add_argument(
        "--loop", choices=("uvloop", "asyncio"), default="uvloop", help="the event loop (the ledger runs on uvloop)"
    )
    return parser.parse_args()


if __name__ == "__main__":
    configure_logging("ledger-bench", "WARNING", "console")
    arguments = parse_args()
    if arguments.loop == "uvloop":
        uvloop.run(main(arguments))
    else:
        asyncio.run(main(arguments))
