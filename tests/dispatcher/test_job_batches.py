"""Job batches (ingest's group commit) through real dispatchers, the provider simulator, the
broker and a ledger: a kill -9 mid-batch loses nobody, sends nobody twice and bills nobody
twice; a job that cannot be read is dead-lettered alone; the outcomes of a delivered batch
leave as one message."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aio_pika
import pytest

from shared.contracts import SmsJobBatch
from shared.ledger_queries import LedgerQueries
from shared.topology import DEAD_LETTER_QUEUE, DISPATCH_QUEUE, OUTCOMES_EXCHANGE, work_queue
from tests.dispatcher.harness import eventually, make_job, numbers, peek, publish
from tests.ledger.support import http_status, ledger_process, ledger_settings, publisher
from tests.support.queues import depth

pytestmark = pytest.mark.slow

# A copy of every outcome message, for the test to read (the ledger consumes its own queue).
OUTCOME_COPY = work_queue("test.outcomes.copy", dead_letters=DEAD_LETTER_QUEUE.name)


async def bind_outcome_copy(amqp_url: str) -> None:
    connection = await aio_pika.connect(amqp_url)
    try:
        channel = await connection.channel()
        queue = await channel.declare_queue(
            OUTCOME_COPY.name, durable=True, arguments={"x-queue-type": "quorum", **(OUTCOME_COPY.arguments or {})}
        )
        await queue.bind(OUTCOMES_EXCHANGE.name)
    finally:
        await connection.close()


def events_of(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The outcome events of outcome messages: an OutcomeEvent, or an OutcomeBatch of them."""
    return [event for m in messages for event in m.get("events", [m])]


@pytest.fixture
async def ledger(amqp_url: str, tmp_path: Path) -> AsyncIterator[LedgerQueries]:
    settings = ledger_settings(amqp_url, f"chdb://{tmp_path / 'chdb'}", "rsms")
    with ledger_process(settings, tmp_path / "ledger.log") as process:
        process.start()

        async def ready() -> bool:
            return await http_status(settings.ledger_http_port, "/health/ready") == 200

        await eventually(ready, lambda ok: ok, within=90, what="the ledger to be ready")
        async with publisher(amqp_url) as broker:
            yield LedgerQueries(broker, timeout=30)


async def test_dispatcher_killed_mid_batch_loses_none_sends_none_twice_bills_none_twice(
    amqp_url, simulator, start_dispatcher, ledger
):
    # Ten jobs of 100 recipients in one message; provider requests one at a time, each
    # answered slowly, so the kill lands with some jobs sent and others not yet.
    await bind_outcome_copy(amqp_url)
    await simulator.faults(latency_ms=150)
    settings = {"RSMS_PROVIDER_BATCH_SIZE": "100", "RSMS_PROVIDER_MAX_CONCURRENT_REQUESTS": "1"}
    first = await start_dispatcher(**settings).ready()
    jobs = [make_job(numbers(100, start=100 * n)) for n in range(10)]
    await publish(amqp_url, SmsJobBatch(jobs=jobs).model_dump_json().encode())

    at_kill = await eventually(simulator.stats, lambda s: s.get("delivered", 0) >= 300, what="300 sent")
    first.kill()
    assert at_kill["delivered"] < 1000, "the kill must land in the middle of the batch"

    await start_dispatcher(**settings).ready()
    await eventually(simulator.stats, lambda s: s.get("delivered", 0) >= 1000, what="all 1000 sent")
    messages = await eventually(
        lambda: peek(amqp_url, OUTCOME_COPY.name),
        lambda m: len(events_of(m)) >= 10,
        what="the outcomes of the ten jobs",
    )

    delivered = await simulator.messages()
    recipients = [r for job in jobs for r in job.recipients]
    assert Counter(m["to"] for m in delivered) == Counter(recipients), "each recipient sent exactly once"
    # One message for the delivered batch, one event per job, everyone sent.
    assert len(messages) == 1 and "events" in messages[0]
    events = events_of(messages)
    assert sorted(e["message_id"] for e in events) == sorted(str(j.message_id) for j in jobs)
    ids = {m["to"]: m["id"] for m in delivered}
    outcomes = [o for e in events for o in e["outcomes"]]
    assert {o["recipient"]: o["provider_reference"] for o in outcomes} == ids
    assert {o["status"] for o in outcomes} == {"sent"}
    assert await depth(amqp_url, DISPATCH_QUEUE.name) == 0

    # Billed once: the ledger's usage counts each recipient once at its price.
    today = datetime.now(UTC).date()

    async def billed() -> Any:
        return await ledger.usage("proj", today, today, "day")

    report = await eventually(
        billed, lambda r: sum(row.recipients for row in r.rows) >= 1000, within=60, what="usage of 1000"
    )
    await eventually(
        lambda: depth(amqp_url, "rsms.ledger.outcomes"), lambda d: d == 0, within=60, what="ledger caught up"
    )
    report = await billed()
    assert sum(row.recipients for row in report.rows) == 1000
    assert sum(row.cost for row in report.rows) == Decimal("0.67") * 1000


async def test_a_job_that_cannot_be_read_is_dead_lettered_alone_and_its_batch_goes_on(
    amqp_url, simulator, start_dispatcher
):
    await bind_outcome_copy(amqp_url)
    await start_dispatcher().ready()
    good = [make_job(numbers(3, start=10 * n)) for n in range(2)]
    poison = b'{"recipients": ["+4791234567"], "message": "not a job"}'
    body = b'{"schema_version":1,"jobs":[' + good[0].model_dump_json().encode() + b"," + poison + b","
    body += good[1].model_dump_json().encode() + b"]}"
    await publish(amqp_url, body)

    await eventually(simulator.stats, lambda s: s.get("delivered", 0) >= 6, what="the good jobs sent")
    letters = await eventually(
        lambda: peek(amqp_url, DEAD_LETTER_QUEUE.name), lambda found: len(found) >= 1, what="the dead letter"
    )
    messages = await eventually(
        lambda: peek(amqp_url, OUTCOME_COPY.name), lambda m: len(events_of(m)) >= 2, what="the good jobs' outcomes"
    )
    assert [(letter["reason"], letter["body"]) for letter in letters] == [("invalid_job", poison.decode())]
    assert sorted(m["to"] for m in await simulator.messages()) == sorted(r for job in good for r in job.recipients)
    assert len(messages) == 1
    assert sorted(e["message_id"] for e in events_of(messages)) == sorted(str(j.message_id) for j in good)
    await eventually(lambda: depth(amqp_url, DISPATCH_QUEUE.name), lambda d: d == 0, what="the batch acked")


async def test_redis_lost_mid_batch_hands_the_whole_batch_back_and_sends_nobody_twice(
    amqp_url, redis_url, simulator, start_dispatcher, tcp_proxy
):
    await bind_outcome_copy(amqp_url)
    redis_target = urlsplit(redis_url)
    redis_proxy = await tcp_proxy(redis_target.hostname, redis_target.port or 6379)
    await simulator.faults(latency_ms=100)
    dispatcher = await start_dispatcher(
        RSMS_REDIS_URL=redis_proxy.url_for(redis_url),
        RSMS_PROVIDER_BATCH_SIZE="20",
        RSMS_PROVIDER_MAX_CONCURRENT_REQUESTS="1",
    ).ready()
    jobs = [make_job(numbers(20, start=20 * n)) for n in range(10)]
    await publish(amqp_url, SmsJobBatch(jobs=jobs).model_dump_json().encode())

    at_cut = await eventually(simulator.stats, lambda s: s.get("delivered", 0) >= 40, what="sending under way")
    await redis_proxy.cut()
    await asyncio.sleep(2)
    await redis_proxy.restore()
    assert at_cut["delivered"] < 200, "the outage must land in the middle of the batch"

    expected = [r for job in jobs for r in job.recipients]
    await eventually(
        simulator.stats, lambda s: s.get("delivered", 0) >= len(expected), within=90, what="every recipient sent"
    )
    messages = await eventually(
        lambda: peek(amqp_url, OUTCOME_COPY.name), lambda m: len(events_of(m)) >= 10, what="the ten outcomes"
    )
    delivered = await simulator.messages()
    assert Counter(m["to"] for m in delivered) == Counter(expected), "each recipient delivered exactly once"
    # Recipients sent but not yet recorded when Redis went go again with the same reference,
    # and the provider delivers them once.
    assert (await simulator.stats()).get("duplicate_attempts", 0) == sum(m["attempts"] - 1 for m in delivered)
    events = events_of(messages)
    assert sorted(e["message_id"] for e in events) == sorted(str(j.message_id) for j in jobs)
    assert Counter(o["recipient"] for e in events for o in e["outcomes"] if o["status"] == "sent") == Counter(expected)
    await eventually(lambda: depth(amqp_url, DISPATCH_QUEUE.name), lambda d: d == 0, what="the batch acked")
    assert 'rsms_dispatcher_jobs_total{result="requeued"}' in await dispatcher.metrics(), "handed back whole"
