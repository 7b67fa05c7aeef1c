"""Redis comes back empty in the middle of a run: its send markers are gone, and nobody
may be sent twice nor billed twice because of it.

The dispatcher works on a redis-server of the test's own, which the test kills and starts
again without its data while jobs are in flight. The provider simulator's delivery log
counts every SMS that would reach a handset; the ledger (in this process, on chDB) counts
what was billed.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from services.ledger.schema import OUTCOMES_TABLE
from shared.topology import DEAD_LETTER_QUEUE, DISPATCH_QUEUE
from tests.dispatcher.harness import eventually, make_job, numbers, peek, publish
from tests.ledger.support import ledger_settings, running_ledger
from tests.support.queues import depth
from tests.support.redis_server import RedisServer

JOBS, PER_JOB = 10, 20


@pytest.fixture
def own_redis(free_port: Callable[[], int], tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(free_port(), tmp_path / "redis", appendonly=False).start()
    try:
        yield server
    finally:
        server.stop()


def billed_per_recipient(clickhouse) -> Counter[str]:
    rows = (
        clickhouse.client()
        .query(
            f"SELECT recipient, count() FROM {clickhouse.database}.{OUTCOMES_TABLE} FINAL "
            "WHERE status = 'sent' AND cost > 0 GROUP BY recipient"
        )
        .result_rows
    )
    return Counter({recipient: count for recipient, count in rows})


async def run_with_redis_emptied_mid_run(amqp_url, simulator, start_dispatcher, own_redis, **settings):
    await simulator.faults(latency_ms=200)
    settings = {
        "RSMS_REDIS_URL": own_redis.url,
        "RSMS_PROVIDER_BATCH_SIZE": str(PER_JOB),
        "RSMS_PROVIDER_MAX_CONCURRENT_REQUESTS": "1",
        "RSMS_DISPATCHER_PREFETCH": "4",
        **settings,
    }
    first = await start_dispatcher(**settings).ready()
    jobs = [make_job(numbers(PER_JOB, start=i * PER_JOB)) for i in range(JOBS)]
    await publish(amqp_url, *jobs)
    at_loss = await eventually(simulator.stats, lambda s: s.get("delivered", 0) >= 3 * PER_JOB, what="sending")
    # The worst moment: a batch taken by the provider and not yet answered, the dispatcher
    # killed before it recorded it, and Redis back without any marker.
    first.kill()
    own_redis.restart_empty()
    assert at_loss["delivered"] < JOBS * PER_JOB, "Redis must lose its data in the middle of the run"
    await start_dispatcher(**settings).ready()
    return [r for job in jobs for r in job.recipients]


async def test_a_provider_that_deduplicates_gets_resends_and_delivers_each_recipient_once(
    amqp_url, simulator, start_dispatcher, own_redis, clickhouse
):
    async with running_ledger(ledger_settings(amqp_url, clickhouse.dsn, clickhouse.database)):
        expected = await run_with_redis_emptied_mid_run(amqp_url, simulator, start_dispatcher, own_redis)
        await eventually(
            simulator.stats, lambda s: s.get("delivered", 0) >= len(expected), within=90, what="everyone sent"
        )
        await eventually(lambda: depth(amqp_url, DISPATCH_QUEUE.name), lambda d: d == 0, what="queue drained")
        billed = await eventually(
            lambda: _async(billed_per_recipient(clickhouse)), lambda b: len(b) >= len(expected), what="all billed"
        )

    delivered = Counter(m["to"] for m in await simulator.messages())
    assert set(delivered) == set(expected)
    twice = sorted(r for r, n in delivered.items() if n > 1)
    assert twice == [], f"{len(twice)} recipient(s) sent twice"
    assert set(billed) == set(expected)
    assert [r for r, n in billed.items() if n > 1] == [], "billed twice"
    assert await peek(amqp_url, DEAD_LETTER_QUEUE.name) == []


async def test_a_provider_that_cannot_deduplicate_gets_no_blind_resend_the_unknown_are_held(
    amqp_url, simulator, start_dispatcher, own_redis, clickhouse
):
    # Every submission is an SMS at this provider: a blind resend shows up here.
    await simulator.faults(deduplicate=False)
    async with running_ledger(ledger_settings(amqp_url, clickhouse.dsn, clickhouse.database)):
        expected = await run_with_redis_emptied_mid_run(
            amqp_url, simulator, start_dispatcher, own_redis, RSMS_PROVIDER_DEDUPLICATES="false"
        )

        async def delivered_and_held() -> tuple[Counter[str], set[str]]:
            delivered = Counter(m["to"] for m in await simulator.messages())
            held = {
                r
                for letter in await peek(amqp_url, DEAD_LETTER_QUEUE.name)
                if letter["reason"] == "outcome_unknown"
                for r in letter["job"]["recipients"]
            }
            return delivered, held

        await eventually(
            delivered_and_held,
            lambda dh: set(dh[0]) | dh[1] >= set(expected),
            within=90,
            what="every recipient sent or held",
        )
        await eventually(lambda: depth(amqp_url, DISPATCH_QUEUE.name), lambda d: d == 0, what="queue drained")
        delivered, held = await delivered_and_held()
        # Every SMS that left is accounted for: billed, or held for the operator to decide.
        billed = await eventually(
            lambda: _async(billed_per_recipient(clickhouse)),
            lambda b: set(b) | held >= set(delivered),
            what="every sent recipient billed or held",
        )

    twice = sorted(r for r, n in delivered.items() if n > 1)
    assert twice == [], f"{len(twice)} recipient(s) sent twice"
    assert (await simulator.stats()).get("duplicate_deliveries", 0) == 0
    assert held, "the recipients in flight when Redis lost their markers are held for an operator"
    assert set(delivered) | held == set(expected)  # nothing lost: sent, or held to decide on
    assert [r for r, n in billed.items() if n > 1] == [], "billed twice"
    assert set(billed) <= set(delivered)


async def _async(value):
    return value
