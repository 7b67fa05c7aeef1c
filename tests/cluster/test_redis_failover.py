"""The gateway under steady load while its Redis loses a node (kill -9), counted.

Ingest (`rsms ingest`), a dispatcher and the provider simulator run as processes, the
ledger in this process (chDB); Redis is (a) a primary with two replicas under three
sentinels, whose primary is killed, or (b) a Redis Cluster of three masters with two
replicas each, whose master of the send markers' slot is killed. Both run with
RSMS_REDIS_WAIT_REPLICAS=1: an Idempotency-Key claim and a send marker count only once a
replica has them, so the replica that takes over has every one of them. Two replicas per
primary, so one is left to confirm writes after the other was promoted.

The load: requests with an Idempotency-Key each, two recipients each, retried with the
same key until accepted (as a client does after a 5xx); after the failover every accepted
request is sent once more with its key, and must be answered with its first response
(same message id) and queue nothing. Counted: requests accepted, recipients delivered
exactly once, lost, sent twice (the simulator's delivery log, deduplication off, so a
second submission is a second SMS), billed twice (the ledger), and how long after the
kill requests were accepted again and new ones delivered. One JSON line with the figures.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from services.dispatcher.send_markers import GENERATION_KEY
from services.ledger.schema import OUTCOMES_TABLE
from shared.accounts import ProjectLimits
from shared.topology import DEAD_LETTER_QUEUE
from tests.dispatcher.harness import Dispatcher, Simulator, declare, eventually, peek
from tests.ledger.support import ledger_settings, running_ledger
from tests.support.accounts import add_project
from tests.support.ingest_server import ServedIngest, served_ingest
from tests.support.redis_ha import RedisClusterSet, SentinelSet

LOAD_SECONDS = 30.0
KILL_AFTER_SECONDS = 10.0
CLIENTS = 4
PER_REQUEST = 2
SEND = "/api/v1/sms/send"


@dataclass
class Request:
    index: int
    first_try: float = 0.0
    accepted_at: float | None = None
    message_id: str = ""
    attempts: int = 0

    @property
    def key(self) -> str:
        return f"failover-{self.index}"

    @property
    def recipients(self) -> list[str]:
        return [f"+4790{self.index * PER_REQUEST + i:06d}" for i in range(PER_REQUEST)]

    def body(self) -> dict[str, Any]:
        return {"tag": "billing", "recipients": self.recipients, "message": f"load {self.index}"}


@dataclass
class Load:
    requests: list[Request] = field(default_factory=list)
    first_seen: dict[str, float] = field(default_factory=dict)
    """When each recipient first showed in the simulator's delivery log."""


async def post(client: httpx.AsyncClient, request: Request, headers: dict[str, str]) -> httpx.Response | None:
    try:
        return await client.post(SEND, json=request.body(), headers={**headers, "Idempotency-Key": request.key})
    except httpx.TransportError:
        return None


async def send_until_accepted(client: httpx.AsyncClient, request: Request, headers: dict[str, str]) -> None:
    request.first_try = time.monotonic()
    give_up = request.first_try + 60
    while time.monotonic() < give_up:
        request.attempts += 1
        response = await post(client, request, headers)
        if response is not None and response.status_code == 200:
            request.accepted_at = time.monotonic()
            request.message_id = response.json()["data"]["messageId"]
            return
        await asyncio.sleep(0.2)  # a 5xx (Redis unreachable), a 429, a dropped connection: retry


async def run_load(url: str, headers: dict[str, str], load: Load, kill: Callable[[], None]) -> float:
    """Steady load for LOAD_SECONDS; `kill` after KILL_AFTER_SECONDS. Answers the kill's time."""
    counter = iter(range(10**6))
    start = time.monotonic()
    stop_at = start + LOAD_SECONDS
    killed_at: list[float] = []

    async def client_loop(client: httpx.AsyncClient) -> None:
        while time.monotonic() < stop_at:
            request = Request(next(counter))
            load.requests.append(request)
            await send_until_accepted(client, request, headers)
            await asyncio.sleep(0.05)

    async def killer() -> None:
        await asyncio.sleep(KILL_AFTER_SECONDS)
        killed_at.append(time.monotonic())
        await asyncio.to_thread(kill)

    async with httpx.AsyncClient(base_url=url, timeout=10) as client:
        await asyncio.gather(killer(), *(client_loop(client) for _ in range(CLIENTS)))
    return killed_at[0]


async def watch_deliveries(simulator: Simulator, load: Load) -> None:
    while True:
        now = time.monotonic()
        for message in await simulator.messages():
            load.first_seen.setdefault(message["to"], now)
        await asyncio.sleep(0.25)


def billed_per_recipient(clickhouse: Any) -> Counter[str]:
    rows = (
        clickhouse.client()
        .query(
            f"SELECT recipient, count() FROM {clickhouse.database}.{OUTCOMES_TABLE} FINAL "
            "WHERE status = 'sent' AND cost > 0 GROUP BY recipient"
        )
        .result_rows
    )
    return Counter({recipient: count for recipient, count in rows})


@pytest.fixture
def sentinel_set(tmp_path: Path) -> Iterator[SentinelSet]:
    topology = SentinelSet(tmp_path / "sentinel", replicas=2)
    try:
        yield topology
    finally:
        topology.stop()


@pytest.fixture
def cluster_set(tmp_path: Path) -> Iterator[RedisClusterSet]:
    topology = RedisClusterSet(tmp_path / "cluster", replicas=2)
    try:
        yield topology
    finally:
        topology.stop()


@pytest.fixture
async def simulator(free_port: Callable[[], int], tmp_path: Path) -> AsyncIterator[Simulator]:
    sim = Simulator(free_port(), tmp_path / "simulator.log", RSMS_PROVIDER_SIM_TIMEOUT_SECONDS="3")
    try:
        started = await sim.started()
        # Every submission an SMS: a resend shows up as a second delivery.
        await started.faults(deduplicate=False, latency_ms=50)
        yield started
    finally:
        await sim.stop()


async def failover_under_load(
    redis_url: str,
    kill: Callable[[], None],
    *,
    amqp_url: str,
    simulator: Simulator,
    clickhouse: Any,
    accounts_file: Path,
    tmp_path: Path,
    free_port: Callable[[], int],
) -> dict[str, Any]:
    await declare(amqp_url)
    durability = {"RSMS_REDIS_WAIT_REPLICAS": "1", "RSMS_REDIS_WAIT_TIMEOUT_MS": "500"}
    keys = add_project(
        accounts_file,
        limits=ProjectLimits(requests_per_minute=100_000, tag_requests_per_minute=100_000, concurrent_requests=200),
    )
    dispatcher = Dispatcher(
        {
            "RSMS_AMQP_URL": amqp_url,
            "RSMS_REDIS_URL": redis_url,
            "RSMS_PROVIDER_URL": simulator.url,
            "RSMS_PROVIDER_DEDUPLICATES": "false",
            "RSMS_PROVIDER_TIMEOUT_SECONDS": "2",
            "RSMS_DISPATCHER_INFRA_BACKOFF_SECONDS": "0.5",
            "RSMS_ACCOUNTS_FILE": str(accounts_file),
            **durability,
        },
        free_port(),
        tmp_path / "dispatcher.log",
    )
    ingest_env = {
        "RSMS_AMQP_URL": amqp_url,
        "RSMS_REDIS_URL": redis_url,
        "RSMS_ACCOUNTS_FILE": str(accounts_file),
        "RSMS_INGEST_WORKERS": "1",
        "RSMS_REDIS_TIMEOUT_SECONDS": "1",
        **durability,
    }
    load = Load()
    headers = {"Authorization": f"Bearer {keys.live_key}"}
    ledger = ledger_settings(amqp_url, clickhouse.dsn, clickhouse.database, redis_url=redis_url)
    try:
        await dispatcher.ready()
        async with running_ledger(ledger):
            with served_ingest(ingest_env, free_port(), tmp_path / "ingest.log", free_port()) as ingest:
                watcher = asyncio.create_task(watch_deliveries(simulator, load))
                try:
                    killed_at = await run_load(ingest.url, headers, load, kill)
                    replays = await replay_all(ingest, load, headers)
                    accepted = [r for r in load.requests if r.accepted_at is not None]
                    expected = {n for r in accepted for n in r.recipients}

                    async def delivered_or_held() -> tuple[Counter[str], set[str]]:
                        delivered = Counter(m["to"] for m in await simulator.messages())
                        held = {
                            n
                            for letter in await peek(amqp_url, DEAD_LETTER_QUEUE.name)
                            for n in letter["job"]["recipients"]
                        }
                        return delivered, held

                    await eventually(
                        delivered_or_held,
                        lambda dh: set(dh[0]) | dh[1] >= expected,
                        within=120,
                        what="every accepted recipient delivered or held",
                    )
                    _, held_now = await delivered_or_held()
                    await eventually(
                        lambda: _now(billed_per_recipient(clickhouse)),
                        lambda b: set(b) >= expected - held_now,
                        within=60,
                        what="every delivered recipient billed",
                    )
                    await asyncio.sleep(2)  # anything sent twice would show by now
                    delivered, held = await delivered_or_held()
                    billed = billed_per_recipient(clickhouse)
                finally:
                    watcher.cancel()
    finally:
        await dispatcher.terminate()
        dispatcher.close()

    after_kill = [r.accepted_at for r in accepted if r.accepted_at is not None and r.accepted_at > killed_at]
    new_after_kill = [r for r in accepted if r.first_try > killed_at]
    first_new_delivery = [load.first_seen[n] for r in new_after_kill for n in r.recipients if n in load.first_seen]
    return {
        "requests_accepted": len(accepted),
        "requests_not_accepted": len(load.requests) - len(accepted),
        "requests_retried": sum(1 for r in accepted if r.attempts > 1),
        "recipients_accepted": len(expected),
        "delivered_exactly_once": sum(1 for n in expected if delivered[n] == 1),
        "lost": len(expected - set(delivered) - held),
        "held_for_operator": len(held & expected),
        "sent_twice": sum(1 for n in delivered if delivered[n] > 1),
        "billed_twice": sum(1 for n in billed if billed[n] > 1),
        "unexpected_deliveries": len(set(delivered) - expected),
        "idempotent_replays": replays["replayed"],
        "replays_answered_differently": replays["different"],
        "accepting_resumed_s": round(min(after_kill) - killed_at, 2) if after_kill else None,
        "sending_resumed_s": round(min(first_new_delivery) - killed_at, 2) if first_new_delivery else None,
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }


async def replay_all(ingest: ServedIngest, load: Load, headers: dict[str, str]) -> dict[str, int]:
    """Every accepted request once more with its key: the first response, nothing queued."""
    replayed = different = 0
    async with httpx.AsyncClient(base_url=ingest.url, timeout=10) as client:
        for request in [r for r in load.requests if r.accepted_at is not None]:
            response = await post(client, request, headers)
            assert response is not None
            replayed += 1
            if response.status_code != 200 or response.json()["data"]["messageId"] != request.message_id:
                different += 1
    return {"replayed": replayed, "different": different}


async def _now(value: Any) -> Any:
    return value


def check(figures: dict[str, Any]) -> None:
    print(json.dumps(figures))
    assert figures["requests_accepted"] > 100, "the load must have run"
    assert figures["lost"] == 0
    assert figures["sent_twice"] == 0
    assert figures["billed_twice"] == 0
    assert figures["unexpected_deliveries"] == 0
    assert figures["replays_answered_differently"] == 0
    assert figures["accepting_resumed_s"] is not None and figures["sending_resumed_s"] is not None


async def test_sentinel_failover_of_the_primary_under_load(
    sentinel_set: SentinelSet,
    amqp_url: str,
    simulator: Simulator,
    clickhouse: Any,
    accounts_file: Path,
    tmp_path: Path,
    free_port: Callable[[], int],
) -> None:
    def kill() -> None:
        killed = sentinel_set.primary()
        killed.kill()
        sentinel_set.wait_failed_over(killed)

    figures = await failover_under_load(
        sentinel_set.url,
        kill,
        amqp_url=amqp_url,
        simulator=simulator,
        clickhouse=clickhouse,
        accounts_file=accounts_file,
        tmp_path=tmp_path,
        free_port=free_port,
    )
    check({"scenario": "sentinel: kill -9 the primary", **figures})


async def test_cluster_failover_of_a_master_under_load(
    cluster_set: RedisClusterSet,
    amqp_url: str,
    simulator: Simulator,
    clickhouse: Any,
    accounts_file: Path,
    tmp_path: Path,
    free_port: Callable[[], int],
) -> None:
    def kill() -> None:
        # The master of the send markers' slot: every send claims there.
        killed = cluster_set.master_of(GENERATION_KEY)
        killed.kill()
        cluster_set.wait_failed_over(killed, GENERATION_KEY)

    figures = await failover_under_load(
        cluster_set.url,
        kill,
        amqp_url=amqp_url,
        simulator=simulator,
        clickhouse=clickhouse,
        accounts_file=accounts_file,
        tmp_path=tmp_path,
        free_port=free_port,
    )
    check({"scenario": "cluster: kill -9 the master of the markers' slot", **figures})
