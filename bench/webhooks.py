"""Webhook delivery rate: receipt events per second from the broker to the projects' URLs.

Each round publishes `--events` receipt events for four projects (while no sender runs),
then starts the webhook sender in this process and clocks from the moment its consumers
start until the receiver has taken every event: how fast a sender drains a backlog,
covering consuming, mapping, batching, signing, the HTTP requests and the acks. The
receiver is a separate process (aiohttp) that verifies every signature and counts
distinct event ids, so a figure can never come from unsigned requests or from counting a
redelivered event twice.

Scenarios: the default settings (a project's events batched, up to 100 a request); one
event per request (`RSMS_WEBHOOKS_BATCH_MAX_EVENTS=1`); and the default settings with a
fifth project whose receiver never answers, its events published first (isolation: the
four others' rate should not fall).

Baselines, same run: the same bodies drained from a quorum queue with raw aio-pika (what
the broker alone costs), and the same events POSTed straight to the same receiver with
httpx in batches of 100, four requests per project at a time (what the HTTP alone costs).

    .venv/bin/python -m bench.webhooks [--rounds 3] [--events 20000] [--unbatched-events 2000]

Runs in a throw-away RabbitMQ vhost and temp directory; stops the receiver it started.
"""

from __future__ import annotations

import argparse
import asyncio
import hmac
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import defaultdict
from collections.abc import Coroutine
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aio_pika
import httpx
import uvloop
from faststream.rabbit import RabbitBroker

from cli.table import print_table
from services.webhooks.app import build_app
from services.webhooks.events import receipt_events
from services.webhooks.metrics import WebhooksMetrics
from services.webhooks.settings import WebhooksSettings
from services.webhooks.signing import request_body, signed_headers
from shared import accounts as store
from shared.contracts import ReceiptEvent
from shared.log import configure_logging
from shared.topology import RECEIPTS_EXCHANGE, bind_webhook_queues, declare_topology, declare_webhook_queues

ROOT = Path(__file__).resolve().parents[1]
BASE_AMQP = "amqp://guest:guest@localhost:5672/"
PROJECTS = ("bench-a", "bench-b", "bench-c", "bench-d")
HANGING = "bench-hang"
ROUND_DEADLINE_SECONDS = 180.0


@dataclass
class Scenario:
    name: str
    events: int
    overrides: dict[str, Any]
    hanging_events: int = 0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def rabbitmqctl(*args: str) -> None:
    subprocess.run(["rabbitmqctl", "-q", *args], check=True, capture_output=True, timeout=60)


def receipt_bodies(count: int, projects: tuple[str, ...]) -> list[bytes]:
    now = datetime.now(UTC)
    return [
        ReceiptEvent(
            event_id=uuid.uuid4(),
            message_id=uuid.uuid4(),
            project=projects[i % len(projects)],
            recipient=f"+47{40_000_000 + i}",
            status="delivered",
            final=True,
            provider_reference=f"carrier-{i}",
            occurred_at=now,
            received_at=now,
        )
        .model_dump_json()
        .encode()
        for i in range(count)
    ]


# --- the receiver (a process of its own) ------------------------------------------------


def serve_receiver(port: int, secrets_file: Path) -> None:
    from aiohttp import web

    secrets: dict[str, str] = json.loads(secrets_file.read_text())
    seen: dict[str, set[str]] = defaultdict(set)
    counts = {"requests": 0, "rejected": 0}
    never = asyncio.Event()

    async def hook(request: web.Request) -> web.Response:
        project = request.match_info["project"]
        body = await request.read()
        timestamp = request.headers.get("X-RSMS-Timestamp", "")
        expected = "v1=" + hmac.new(secrets[project].encode(), timestamp.encode() + b"." + body, "sha256").hexdigest()
        if not hmac.compare_digest(request.headers.get("X-RSMS-Signature", ""), expected):
            counts["rejected"] += 1
            return web.Response(status=401)
        if project == HANGING:
            await never.wait()
        counts["requests"] += 1
        seen[project].update(event["id"] for event in json.loads(body)["events"])
        return web.Response(status=204)

    async def count(_: web.Request) -> web.Response:
        return web.json_response({"events": {p: len(ids) for p, ids in seen.items()}, **counts})

    async def reset(_: web.Request) -> web.Response:
        seen.clear()
        counts.update(requests=0, rejected=0)
        return web.json_response({})

    app = web.Application()
    app.router.add_post("/hooks/{project}", hook)
    app.router.add_get("/count", count)
    app.router.add_post("/reset", reset)
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None, shutdown_timeout=1.0)


class ReceiverProcess:
    def __init__(self, directory: Path) -> None:
        self.port = free_port()
        self.secrets = {p: f"whsec_bench_{p}_{uuid.uuid4().hex}" for p in (*PROJECTS, HANGING)}
        secrets_file = directory / "secrets.json"
        secrets_file.write_text(json.dumps(self.secrets))
        self.process = subprocess.Popen(
            [sys.executable, "-m", "bench.webhooks", "--serve-receiver", str(self.port), str(secrets_file)],
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        self.client = httpx.AsyncClient(base_url=f"http://127.0.0.1:{self.port}", timeout=10)

    def url(self, project: str) -> str:
        return f"http://127.0.0.1:{self.port}/hooks/{project}"

    async def wait_ready(self) -> None:
        for _ in range(200):
            try:
                await self.client.get("/count")
                return
            except httpx.TransportError:
                await asyncio.sleep(0.05)
        raise RuntimeError("the receiver did not start")

    async def count(self) -> dict[str, Any]:
        answer: dict[str, Any] = (await self.client.get("/count")).json()
        return answer

    async def reset(self) -> None:
        await self.client.post("/reset")

    async def stop(self) -> None:
        await self.client.aclose()
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)


# --- rounds ------------------------------------------------------------------------------


def delivered(metrics: WebhooksMetrics) -> float:
    return sum(
        metrics.registry.get_sample_value("rsms_webhooks_events_delivered_total", {"project": p}) or 0.0
        for p in PROJECTS
    )


async def sender_round(settings: WebhooksSettings, receiver: ReceiverProcess, scenario: Scenario) -> float:
    """Seconds from the sender's consumers starting until the receiver has every event."""
    await receiver.reset()
    hanging = receipt_bodies(scenario.hanging_events, (HANGING,))
    bodies = receipt_bodies(scenario.events, PROJECTS)
    async with await aio_pika.connect(settings.amqp_url) as connection:
        channel = await connection.channel(publisher_confirms=True)
        exchange = await channel.get_exchange(RECEIPTS_EXCHANGE.name)
        for body in [*hanging, *bodies]:
            await exchange.publish(
                aio_pika.Message(body, delivery_mode=aio_pika.DeliveryMode.PERSISTENT), routing_key=""
            )
    metrics = WebhooksMetrics()
    app = build_app(settings, metrics)
    consuming_from: list[float] = []
    app.on_startup(lambda: consuming_from.append(time.perf_counter()))
    await app.start()
    try:
        deadline = consuming_from[0] + ROUND_DEADLINE_SECONDS
        while delivered(metrics) < scenario.events:
            if time.perf_counter() > deadline:
                raise TimeoutError(f"{delivered(metrics):.0f} of {scenario.events} events delivered")
            await asyncio.sleep(0.005)
        seconds = time.perf_counter() - consuming_from[0]
    finally:
        await app.stop()
    if os.environ.get("RSMS_BENCH_VERBOSE"):
        for metric in metrics.registry.collect():
            for sample in metric.samples:
                if sample.name in ("rsms_webhooks_requests_total", "rsms_webhooks_batch_events_count"):
                    print("   ", sample.name, sample.labels, sample.value)
    counted = await receiver.count()
    got = sum(n for p, n in counted["events"].items() if p != HANGING)
    assert got == scenario.events, f"receiver has {got} distinct events, expected {scenario.events}"
    assert counted["rejected"] == 0, f"{counted['rejected']} requests failed verification"
    await purge_webhook_queues(settings.amqp_url)
    return seconds


async def purge_webhook_queues(amqp_url: str) -> None:
    """What the hanging project left (retries, dead letters) must not weigh on the next round."""
    async with await aio_pika.connect(amqp_url) as connection:
        channel = await connection.channel()
        for name in ("rsms.webhooks.receipts", "rsms.webhooks.retries", "rsms.webhooks.dead"):
            queue = await channel.get_queue(name)
            await queue.purge()
        for delay in WebhooksSettings.model_fields["webhooks_retry_delays_ms"].default:
            queue = await channel.declare_queue(f"rsms.webhooks.retry.{delay}ms", passive=True)
            await queue.purge()


async def broker_baseline(amqp_url: str, count: int, prefetch: int) -> float:
    """Seconds to drain `count` receipt bodies from a quorum queue with raw aio-pika."""
    bodies = receipt_bodies(count, PROJECTS)
    async with await aio_pika.connect(amqp_url) as connection:
        channel = await connection.channel(publisher_confirms=True)
        queue = await channel.declare_queue("bench.baseline", durable=True, arguments={"x-queue-type": "quorum"})
        for body in bodies:
            await channel.default_exchange.publish(
                aio_pika.Message(body, delivery_mode=aio_pika.DeliveryMode.PERSISTENT), routing_key=queue.name
            )
        consumer = await connection.channel()
        await consumer.set_qos(prefetch_count=prefetch)
        consumer_queue = await consumer.get_queue(queue.name)
        done = asyncio.get_running_loop().create_future()
        seen = 0

        async def on_message(message: aio_pika.abc.AbstractIncomingMessage) -> None:
            nonlocal seen
            ReceiptEvent.model_validate_json(message.body)  # read it, as any consumer must
            await message.ack()
            seen += 1
            if seen == count and not done.done():
                done.set_result(time.perf_counter())

        started = time.perf_counter()
        tag = await consumer_queue.consume(on_message)
        finished = await asyncio.wait_for(done, ROUND_DEADLINE_SECONDS)
        await consumer_queue.cancel(tag)
        await queue.delete(if_unused=False, if_empty=False)
        return float(finished - started)


async def http_baseline(receiver: ReceiverProcess, count: int, batch: int, per_project: int) -> float:
    """Seconds to POST `count` signed events straight to the receiver, `batch` a request."""
    await receiver.reset()
    by_project: dict[str, list[Any]] = defaultdict(list)
    for body in receipt_bodies(count, PROJECTS):
        [event] = receipt_events(ReceiptEvent.model_validate_json(body))
        by_project[event.project].append(event)
    async with httpx.AsyncClient(timeout=30, limits=httpx.Limits(max_connections=None)) as client:

        async def worker(project: str, batches: list[list[Any]]) -> None:
            while batches:
                events = batches.pop()
                body = request_body(events)
                headers = signed_headers(receiver.secrets[project], int(time.time()), body, uuid.uuid4())
                response = await client.post(receiver.url(project), content=body, headers=headers)
                assert response.status_code == 204

        started = time.perf_counter()
        workers: list[Coroutine[Any, Any, None]] = []
        for project, events in by_project.items():
            batches = [events[i : i + batch] for i in range(0, len(events), batch)]
            workers.extend(worker(project, batches) for _ in range(per_project))
        await asyncio.gather(*workers)
        seconds = time.perf_counter() - started
    counted = await receiver.count()
    assert sum(counted["events"].values()) == count
    return seconds


async def main(args: argparse.Namespace) -> None:
    vhost = f"rsms-bench-{uuid.uuid4().hex[:8]}"
    directory = Path(tempfile.mkdtemp(prefix="rsms-bench-webhooks-"))
    rabbitmqctl("add_vhost", vhost)
    rabbitmqctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
    receiver = ReceiverProcess(directory)
    try:
        await receiver.wait_ready()
        accounts = directory / "accounts.toml"
        with store.editing(accounts) as data:
            for project in (*PROJECTS, HANGING):
                store.create_project(data, project, project)
                store.set_webhook(data, project, receiver.url(project), receiver.secrets[project])
        base: dict[str, Any] = {
            "amqp_url": f"{BASE_AMQP}{vhost}",
            "accounts_file": accounts,
            "webhooks_http_port": 0,
            "webhooks_shutdown_seconds": 1.0,
            "log_level": "WARNING",
            "log_format": "console",
        }
        defaults = WebhooksSettings(**base)
        async with RabbitBroker(defaults.amqp_url, logger=None) as broker:
            await declare_topology(broker)
            await declare_webhook_queues(broker, defaults.webhooks_retry_delays_ms)
            # Events are published while no sender runs: bound as a sender with webhooks leaves them.
            await bind_webhook_queues(broker, bound=True)
        scenarios = [
            Scenario("batched (default settings)", args.events, {}),
            Scenario("one event per request", args.unbatched_events, {"webhooks_batch_max_events": 1}),
            Scenario(
                "batched, a fifth project's receiver hanging", args.events, {}, hanging_events=args.hanging_events
            ),
        ]
        await run_rounds(args, base, defaults, receiver, scenarios)
    finally:
        await receiver.stop()
        rabbitmqctl("delete_vhost", vhost)
        shutil.rmtree(directory, ignore_errors=True)


async def run_rounds(
    args: argparse.Namespace,
    base: dict[str, Any],
    defaults: WebhooksSettings,
    receiver: ReceiverProcess,
    scenarios: list[Scenario],
) -> None:
    await sender_round(defaults, receiver, Scenario("warm-up", 400, {}))
    rates: dict[str, list[float]] = defaultdict(list)
    for number in range(1, args.rounds + 1):
        for scenario in scenarios:
            seconds = await sender_round(WebhooksSettings(**(base | scenario.overrides)), receiver, scenario)
            rates[scenario.name].append(scenario.events / seconds)
            print(f"  {scenario.name}: {scenario.events / seconds:,.0f} events/s", flush=True)
        rates["broker"].append(
            args.events / await broker_baseline(defaults.amqp_url, args.events, defaults.webhooks_prefetch)
        )
        http_seconds = await http_baseline(
            receiver, args.events, defaults.webhooks_batch_max_events, defaults.webhooks_max_concurrent_per_project
        )
        rates["http"].append(args.events / http_seconds)
        print(f"round {number}: " + ", ".join(f"{k} {v[-1]:,.0f}/s" for k, v in rates.items()), flush=True)
    print()
    print(
        f"{args.rounds} rounds; {args.events:,} receipt events over {len(PROJECTS)} projects "
        f"({args.unbatched_events:,} unbatched; {args.hanging_events:,} for the hanging project)"
    )
    rows = [[s.name, f"{statistics.median(rates[s.name]):,.0f}", s.events] for s in scenarios]
    rows.append(["baseline: raw aio-pika drain of the same bodies", f"{statistics.median(rates['broker']):,.0f}", ""])
    rows.append(["baseline: httpx POSTs straight to the receiver", f"{statistics.median(rates['http']):,.0f}", ""])
    print_table(["path", "median events/s", "events a round"], rows)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--unbatched-events", type=int, default=2_000)
    parser.add_argument("--hanging-events", type=int, default=2_000)
    parser.add_argument("--serve-receiver", nargs=2, metavar=("PORT", "SECRETS_FILE"), help=argparse.SUPPRESS)
    return parser.parse_args()


if __name__ == "__main__":
    arguments = parse_args()
    if arguments.serve_receiver:
        serve_receiver(int(arguments.serve_receiver[0]), Path(arguments.serve_receiver[1]))
    else:
        configure_logging("webhooks-bench", "WARNING", "console")
        uvloop.run(main(arguments))  # as `rsms webhooks` runs the sender
