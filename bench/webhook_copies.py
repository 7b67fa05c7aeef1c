"""What a gateway where no project has a webhook pays for the webhook sender: RabbitMQ's and
the sender's CPU per outcome message, checkout against checkout.

    .venv/bin/python -m bench.webhook_copies [--roots . /work/main] [--rounds 3] [--messages 5000]

Round by round, each root (a checkout with its own .venv) in turn, the order swapped every
round: a throw-away vhost with the topology declared; that checkout's webhook sender as its
own process (`python -m cli webhooks`, an accounts file with one project and no webhook),
given `--settle` seconds once its consumers are up; RabbitMQ's CPU over `--idle` seconds
with nothing published (whatever else uses the shared broker, and the sender's idle
traffic); then `--messages` outcome events (one recipient each) published to
`rsms.outcomes` as the dispatcher publishes them (persistent, confirmed, 100 in flight),
and a wait until the sender's queue is empty. CPU is utime+stime from /proc from the first
publish to the drained queue, over the messages: RabbitMQ's `beam.smp` (shared: "net" takes
off its idle rate of that round) and the sender's. The ledger's queue is bound and not
consumed here, the same for every root. The publisher (this process) is not counted.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import subprocess
import tempfile
import time
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import aio_pika
from faststream.rabbit import RabbitBroker

from bench.ingest_env import free_port, rabbitmqctl
from bench.peers import CLOCK_TICKS, cpu_ticks, rabbitmq_pids
from cli.table import print_table
from shared import accounts as store
from shared.contracts import OutcomeEvent, RecipientOutcome
from shared.topology import OUTCOMES_EXCHANGE, WEBHOOK_OUTCOMES_QUEUE, declare_topology

BASE_AMQP = "amqp://guest:guest@localhost:5672/"
IN_FLIGHT = 100


def outcome_body() -> bytes:
    return (
        OutcomeEvent(
            event_id=uuid.uuid4(),
            message_id=uuid.uuid4(),
            project="bench",
            tag="R-BENCH",
            sender="RSMS",
            test=False,
            currency="NOK",
            attempt=1,
            occurred_at=datetime.now(UTC),
            outcomes=[
                RecipientOutcome(
                    recipient="+4790000001",
                    country="NO",
                    status="sent",
                    segments=1,
                    cost=Decimal("0.67"),
                    provider_reference="ref-1",
                    error_code=None,
                )
            ],
        )
        .model_dump_json()
        .encode()
    )


def ticks(pids: list[int]) -> int:
    return sum(t for pid in pids if (t := cpu_ticks(pid)) is not None)


async def sender_consuming(amqp_url: str) -> bool:
    async with await aio_pika.connect(amqp_url) as connection:
        channel = await connection.channel()
        with contextlib.suppress(aio_pika.exceptions.ChannelNotFoundEntity):
            queue = await channel.declare_queue(WEBHOOK_OUTCOMES_QUEUE.name, passive=True)
            return bool(queue.declaration_result.consumer_count)
        return False


async def ready_on_webhook_queue(channel: aio_pika.abc.AbstractChannel) -> int:
    queue = await channel.declare_queue(WEBHOOK_OUTCOMES_QUEUE.name, passive=True)
    return int(queue.declaration_result.message_count or 0)


def one_round(root: Path, args: argparse.Namespace, directory: Path) -> dict[str, float]:
    vhost = f"rsms-bench-copies-{uuid.uuid4().hex[:8]}"
    rabbitmqctl("add_vhost", vhost)
    rabbitmqctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
    amqp_url = f"{BASE_AMQP}{vhost}"
    accounts = directory / f"{vhost}.toml"
    with store.editing(accounts) as data:
        store.create_project(data, "bench", "Bench")  # no webhook
    env = {k: v for k, v in os.environ.items() if not k.startswith("RSMS_")} | {
        "RSMS_AMQP_URL": amqp_url,
        "RSMS_ACCOUNTS_FILE": str(accounts),
        "RSMS_WEBHOOKS_HTTP_PORT": str(free_port()),
        "RSMS_LOG_LEVEL": "WARNING",
        "PYTHONPATH": str(root),
    }
    log_path = directory / f"{vhost}.log"
    try:
        with log_path.open("wb") as log:
            sender = subprocess.Popen(
                [str(root / ".venv/bin/python"), "-m", "cli", "webhooks"], cwd=root, env=env, stdout=log, stderr=log
            )
            try:
                return asyncio.run(measure(amqp_url, sender, args, log_path))
            finally:
                sender.terminate()
                sender.wait(30)
    finally:
        rabbitmqctl("delete_vhost", vhost)


async def measure(
    amqp_url: str, sender: subprocess.Popen[bytes], args: argparse.Namespace, log_path: Path
) -> dict[str, float]:
    async with RabbitBroker(amqp_url, logger=None) as broker:
        await declare_topology(broker)
    deadline = time.monotonic() + 60
    while not await sender_consuming(amqp_url):
        if time.monotonic() > deadline or sender.poll() is not None:
            raise RuntimeError(f"the sender did not start: see {log_path}")
        await asyncio.sleep(0.2)
    await asyncio.sleep(args.settle)
    broker_pids = rabbitmq_pids()
    before = ticks(broker_pids)
    await asyncio.sleep(args.idle)
    idle_per_second = (ticks(broker_pids) - before) / CLOCK_TICKS / args.idle

    body = outcome_body()
    async with await aio_pika.connect(amqp_url) as connection:
        channel = await connection.channel(publisher_confirms=True)
        exchange = await channel.get_exchange(OUTCOMES_EXCHANGE.name)
        broker_before, sender_before = ticks(broker_pids), ticks([sender.pid])
        started = time.monotonic()
        for first in range(0, args.messages, IN_FLIGHT):
            await asyncio.gather(
                *(
                    exchange.publish(
                        aio_pika.Message(body, delivery_mode=aio_pika.DeliveryMode.PERSISTENT), routing_key=""
                    )
                    for _ in range(min(IN_FLIGHT, args.messages - first))
                )
            )
        while await ready_on_webhook_queue(channel):  # the copies taken (before: some are left)
            if time.monotonic() - started > 300:
                raise TimeoutError("the sender did not drain its queue")
            await asyncio.sleep(0.05)
        seconds = time.monotonic() - started
        broker_cpu = (ticks(broker_pids) - broker_before) / CLOCK_TICKS
        sender_cpu = (ticks([sender.pid]) - sender_before) / CLOCK_TICKS
    per_message = 1000 / args.messages
    return {
        "rabbitmq": broker_cpu * per_message,
        "rabbitmq_net": (broker_cpu - idle_per_second * seconds) * per_message,
        "idle_ms_per_s": idle_per_second * 1000,
        "sender": sender_cpu * per_message,
        "seconds": seconds,
    }


def main(args: argparse.Namespace) -> None:
    roots = [Path(r).resolve() for r in args.roots]
    results: dict[Path, list[dict[str, float]]] = {root: [] for root in roots}
    with tempfile.TemporaryDirectory(prefix="rsms-bench-copies-") as tmp:
        for number in range(args.rounds):
            order = roots if number % 2 == 0 else roots[::-1]
            for root in order:
                figures = one_round(root, args, Path(tmp))
                results[root].append(figures)
                print(
                    f"  [{number + 1}/{args.rounds}] {root}: RabbitMQ {figures['rabbitmq']:.3f} ms/msg "
                    f"(net of its idle {figures['idle_ms_per_s']:.0f} ms/s: {figures['rabbitmq_net']:.3f}), "
                    f"sender {figures['sender']:.3f} ms/msg, {figures['seconds']:.1f} s",
                    flush=True,
                )

    def median(root: Path, key: str, digits: int = 3) -> str:
        return f"{statistics.median(r[key] for r in results[root]):.{digits}f}"

    print_table(
        ["checkout", "RabbitMQ ms/msg", "RabbitMQ net of idle", "sender ms/msg", "RabbitMQ idle ms/s"],
        [
            [
                str(root),
                median(root, "rabbitmq"),
                median(root, "rabbitmq_net"),
                median(root, "sender"),
                median(root, "idle_ms_per_s", 0),
            ]
            for root in roots
        ],
        empty="No rounds.",
        as_json=False,
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--roots", nargs="+", default=["."], help="Checkouts to compare, each with its .venv.")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--messages", type=int, default=5000, help="Outcome events published a round.")
    parser.add_argument("--settle", type=float, default=2.0, help="Seconds after the sender's consumers are up.")
    parser.add_argument("--idle", type=float, default=3.0, help="Seconds RabbitMQ's idle rate is measured over.")
    main(parser.parse_args())
