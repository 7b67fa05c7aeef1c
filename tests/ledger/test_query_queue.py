"""The ledger's query queue is a quorum queue (it survives the loss of the node that declared
it, issue 11): queries asked while no ledger runs expire there instead of piling up, and a
ledger started later answers only the live ones, over direct reply-to as before."""

from __future__ import annotations

import asyncio
import uuid

import httpx

from shared.errors import GatewayError
from shared.ledger_queries import LedgerQueries
from shared.topology import LEDGER_QUERIES_QUEUE, QUERY_TTL_MS
from tests.ledger.support import eventually, ledger_settings, publisher, running_ledger
from tests.support.queues import depth


def test_the_query_queue_is_quorum_and_drops_what_no_caller_waits_for() -> None:
    assert dict(LEDGER_QUERIES_QUEUE.arguments or {}) == {
        "x-queue-type": "quorum",
        "x-message-ttl": QUERY_TTL_MS,
        "x-delivery-limit": 5,
    }
    # Longer than any caller waits by default (ingest 10 s; `rsms sql` 10 s + its 30 s limit).
    assert QUERY_TTL_MS >= 60_000


async def test_queries_asked_while_no_ledger_runs_expire_and_a_later_ledger_answers_only_live_ones(
    amqp_url, clickhouse
) -> None:
    settings = ledger_settings(amqp_url, clickhouse.dsn, clickhouse.database)
    async with publisher(amqp_url) as broker:
        unanswered = LedgerQueries(broker, timeout=0.5)
        results = await asyncio.gather(
            *(unanswered.message_status("acme", uuid.uuid4()) for _ in range(20)), return_exceptions=True
        )
        assert all(isinstance(r, GatewayError) for r in results)
        # Each query carried its caller's wait as its expiration: gone, though nobody consumed.
        await eventually(lambda: _is_empty(amqp_url), what="the stale queries expired")

    # A caller of its own (one direct reply-to consumer per channel), as another process is.
    async with running_ledger(settings), publisher(amqp_url) as broker:
        report = await LedgerQueries(broker, timeout=10).message_status("acme", uuid.uuid4())
        assert report.found is False
        async with httpx.AsyncClient() as http:  # the ledger answers on this event loop
            metrics = (await http.get(f"http://127.0.0.1:{settings.ledger_http_port}/metrics")).text
    answered = [line for line in metrics.splitlines() if line.startswith("rsms_ledger_queries_total{")]
    assert answered == ['rsms_ledger_queries_total{kind="message_status",outcome="ok"} 1.0']


async def _is_empty(amqp_url: str) -> bool:
    return await depth(amqp_url, LEDGER_QUERIES_QUEUE.name) == 0
