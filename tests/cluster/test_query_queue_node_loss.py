"""The ledger's query queue on a 3-node RabbitMQ cluster: the node that declared it (and
leads it) is killed, and a ledger starting on another node declares the topology and
answers queries there. With the classic queue of before, that declaration failed
(`NOT_FOUND - home node ... of durable queue`) until the dead node came back, so no
service could start anywhere (issue 11)."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from faststream.rabbit import RabbitBroker

from shared.ledger_queries import LedgerQueries
from shared.topology import LEDGER_QUERIES_QUEUE, declare_topology
from tests.ledger.support import ledger_settings, running_ledger

# The cluster helper comes with the RabbitMQ failover work of issue 11.
rabbit_cluster = pytest.importorskip("tests.support.rabbit_cluster").rabbit_cluster

VHOST = "rsms-query-queue"


async def test_queries_are_answered_after_the_node_that_declared_their_queue_died(clickhouse) -> None:
    with rabbit_cluster(3) as cluster:
        cluster.add_vhost(VHOST)
        first, *others = cluster.nodes
        declaring = RabbitBroker(first.url(VHOST), logger=None)
        await declaring.connect()
        try:
            await declare_topology(declaring)
        finally:
            await declaring.stop()
        # A queue's leader is placed on the node of the connection that declared it.
        assert cluster.queue_leader(VHOST, LEDGER_QUERIES_QUEUE.name) is first
        cluster.kill(first)  # kill -9
        assert await asyncio.to_thread(cluster.queue_leader, VHOST, LEDGER_QUERIES_QUEUE.name) in others

        # The ledger on one surviving node, the caller on the other.
        settings = ledger_settings(others[0].url(VHOST), clickhouse.dsn, clickhouse.database)
        async with running_ledger(settings):
            asking = RabbitBroker(others[1].url(VHOST), logger=None)
            await asking.connect()
            try:
                queries = LedgerQueries(asking, timeout=30)
                reports = await asyncio.gather(*(queries.message_status("acme", uuid.uuid4()) for _ in range(10)))
            finally:
                await asking.stop()
    assert [r.found for r in reports] == [False] * 10
