"""The ledger as a real process: killed mid-batch, or started while ClickHouse is away.

Each ledger process gets a chDB directory of its own (`tmp_path`); the test reads the
results over RPC, the way ingest and the CLI do, and counts raw rows in a helper process.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from shared.errors import GatewayError
from shared.ledger_queries import LedgerQueries
from tests.ledger.support import (
    eventually,
    free_port,
    http_status,
    ledger_process,
    ledger_settings,
    make_inbound,
    make_job,
    make_outcome,
    make_receipt,
    numbers,
    publish_inbound,
    publish_job,
    publish_outcome,
    publish_receipt,
    publisher,
    query_chdb_dir,
)
from tests.support.queues import depth

TODAY = datetime.now(UTC).date()


async def _sent_recipients(queries: LedgerQueries) -> int:
    """-1 while the ledger does not answer in time (starting, or busy writing on a loaded
    machine): the polls around it ask again; what they wait for is the count."""
    try:
        report = await queries.usage("acme", TODAY, TODAY, "day")
    except GatewayError:
        return -1
    return sum(row.recipients for row in report.rows)


async def test_a_ledger_killed_mid_batch_loses_nothing_and_bills_nothing_twice(amqp_url, tmp_path):
    data = tmp_path / "chdb"
    # Batches of a few deliveries from all four queues (one multiple-ack each): hundreds of
    # small batches, so the kill lands in the middle of one.
    settings = ledger_settings(amqp_url, f"chdb://{data}", "rsms", ledger_prefetch=8, ledger_batch_seconds=0.05)
    jobs = [make_job(recipients=numbers(20, start=40_000_000 + 100 * i)) for i in range(1000)]
    expected = 20 * len(jobs)
    async with publisher(amqp_url) as broker:
        for i, job in enumerate(jobs):
            await publish_job(broker, job)
            await publish_outcome(broker, make_outcome(job))
            if i % 4 == 0:
                await publish_receipt(broker, make_receipt(job, job.recipients[0], "delivered"))
                await publish_inbound(broker, make_inbound("acme", f"reply {i}"))
        queries = LedgerQueries(broker, timeout=5)
        with ledger_process(settings, tmp_path / "ledger-1.log") as first:
            first.start()
            await eventually(
                lambda: _rows_written(settings.ledger_http_port),
                timeout=60,
                interval=0.02,
                what="the first batches",
            )
            first.kill()
        # Whatever the dead ledger held unacknowledged is back in the queues.
        await eventually(
            lambda: _queue_total_above(amqp_url, 0),
            timeout=10,
            what="events left after the kill (else the kill came too late to prove anything)",
        )

        with ledger_process(settings, tmp_path / "ledger-2.log") as second:
            second.start()
            await eventually(lambda: _queues_drained(amqp_url), timeout=120, what="queues drained")
            await eventually(lambda: _sent_is(queries, expected), timeout=60, what="every recipient")
            assert await _sent_recipients(queries) == expected
            assert second.terminate() == 0
    assert query_chdb_dir(data, "SELECT count() FROM rsms.sms_outcomes FINAL") == [(expected,)]
    assert query_chdb_dir(data, "SELECT count() FROM rsms.sms_requests FINAL") == [(len(jobs),)]
    assert query_chdb_dir(data, "SELECT count() FROM rsms.sms_receipts FINAL") == [(len(jobs) // 4,)]
    assert query_chdb_dir(data, "SELECT count() FROM rsms.sms_inbound FINAL") == [(len(jobs) // 4,)]
    # Raw rows may hold the redelivered batch twice until a merge; billing never does.
    [(raw,)] = query_chdb_dir(data, "SELECT count() FROM rsms.sms_outcomes")
    assert raw >= expected


async def test_with_clickhouse_away_events_wait_on_the_broker_and_land_when_it_is_back(amqp_url, tmp_path):
    closed_port = free_port()
    settings = ledger_settings(amqp_url, f"http://127.0.0.1:{closed_port}", "rsms")
    jobs = [make_job(recipients=numbers(10, start=40_000_000 + 100 * i)) for i in range(20)]
    async with publisher(amqp_url) as broker:
        for job in jobs:
            await publish_job(broker, job)
            await publish_outcome(broker, make_outcome(job))
        queries = LedgerQueries(broker, timeout=5)
        with ledger_process(settings, tmp_path / "ledger-away.log") as away:
            away.start()
            port = settings.ledger_http_port
            await eventually(lambda: _is(http_status(port, "/health/live"), 200), what="liveness")
            await eventually(
                lambda: "clickhouse_unavailable_at_start" in away.log(),
                what="the ledger noticing ClickHouse is away",
            )
            assert await http_status(port, "/health/ready") == 503
            assert await depth(amqp_url, "rsms.ledger.outcomes") == len(jobs)
            assert await depth(amqp_url, "rsms.ledger.accepted") == len(jobs)
            assert away.terminate() == 0
        assert await depth(amqp_url, "rsms.ledger.outcomes") == len(jobs)

        back = settings.model_copy(update={"clickhouse_dsn": f"chdb://{tmp_path / 'chdb'}"})
        with ledger_process(back, tmp_path / "ledger-back.log") as ledger:
            ledger.start()
            # Ready first: a query sent while the ledger still opens chDB expires unanswered.
            await eventually(
                lambda: _is(http_status(back.ledger_http_port, "/health/ready"), 200),
                timeout=90,
                what="readiness",
            )
            await eventually(
                lambda: _sent_is(queries, 10 * len(jobs)),
                timeout=60,
                what="every recipient written",
            )
            await eventually(lambda: _queues_drained(amqp_url), what="queues drained")
            assert ledger.terminate() == 0


async def test_a_broker_outage_mid_run_loses_nothing_and_bills_nothing_twice(amqp_url, tmp_path, tcp_proxy):
    from urllib.parse import urlsplit

    target = urlsplit(amqp_url)
    proxy = await tcp_proxy(target.hostname, target.port or 5672)
    data = tmp_path / "chdb"
    settings = ledger_settings(
        proxy.url_for(amqp_url), f"chdb://{data}", "rsms", ledger_prefetch=8, ledger_batch_seconds=0.05
    )
    jobs = [make_job(recipients=numbers(20, start=40_000_000 + 100 * i)) for i in range(300)]
    expected = 20 * len(jobs)
    async with publisher(amqp_url) as broker:
        queries = LedgerQueries(broker, timeout=5)
        with ledger_process(settings, tmp_path / "ledger.log") as ledger:
            ledger.start()
            # Started for good (consumers on every queue) before the broker goes away.
            await eventually(
                lambda: _is(http_status(settings.ledger_http_port, "/health/ready"), 200),
                timeout=60,
                what="the ledger ready",
            )
            for job in jobs[:150]:
                await publish_job(broker, job)
                await publish_outcome(broker, make_outcome(job))
            await eventually(lambda: _rows_written(settings.ledger_http_port), timeout=60, what="rows written")
            await proxy.cut()  # RabbitMQ gone for the ledger, mid-stream
            for job in jobs[150:]:
                await publish_job(broker, job)
                await publish_outcome(broker, make_outcome(job))
            await asyncio.sleep(2)  # the broker stays away a while; events published meanwhile wait on it
            assert ledger.process is not None and ledger.process.poll() is None
            await proxy.restore()
            await eventually(lambda: _queues_drained(amqp_url), timeout=120, what="queues drained")
            await eventually(lambda: _sent_is(queries, expected), timeout=60, what="every recipient")
            assert ledger.process is not None and ledger.process.poll() is None
            assert ledger.terminate() == 0
    assert query_chdb_dir(data, "SELECT count() FROM rsms.sms_outcomes FINAL") == [(expected,)]
    assert query_chdb_dir(data, "SELECT count() FROM rsms.sms_requests FINAL") == [(len(jobs),)]


async def _rows_written(port: int) -> bool:
    import httpx

    try:
        async with httpx.AsyncClient(timeout=1) as client:
            text = (await client.get(f"http://127.0.0.1:{port}/metrics")).text
    except httpx.TransportError:
        return False
    return any(
        line.startswith("rsms_ledger_rows_written_total{") and not line.endswith(" 0.0") for line in text.splitlines()
    )


async def _queue_total_above(amqp_url: str, floor: int) -> bool:
    return await _queue_total(amqp_url) > floor


async def _sent_is(queries: LedgerQueries, expected: int) -> bool:
    return await _sent_recipients(queries) == expected


async def _queue_total(amqp_url: str) -> int:
    queues = ("rsms.ledger.accepted", "rsms.ledger.outcomes", "rsms.ledger.receipts", "rsms.ledger.inbound")
    return sum([await depth(amqp_url, queue) for queue in queues])


async def _queues_drained(amqp_url: str) -> bool:
    return await _queue_total(amqp_url) == 0


async def _is(value, expected) -> bool:
    return await value == expected
