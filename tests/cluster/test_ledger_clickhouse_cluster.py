"""The ledger on a 2-replica ClickHouse cluster with Keeper (Docker; skipped where no Docker
engine answers, see tests/support/clickhouse_server.py).

Two ledgers' writers, one on each replica, migrate at once: each version is recorded once.
The same batch written through both replicas lands once (insert tokens are deduplicated in
Keeper, whichever replica receives them). A replica killed with SIGKILL: the writer that
used it moves on to the other one, a redelivered event in a new batch is billed once, and
a whole ledger starts on what is left (no DDL is sent: everything is recorded).
"""

from __future__ import annotations

import asyncio
from typing import Any

import clickhouse_connect
import clickhouse_connect.driver.exceptions

from services.ledger.clickhouse import FailoverClient, LedgerWriter, connect_host
from services.ledger.dsn import host_dsns
from services.ledger.reads import LedgerReader
from services.ledger.rows import outcome_rows, request_rows
from services.ledger.schema import MIGRATIONS_TABLE, SCHEMA_MIGRATIONS
from tests.ledger.server_scenario import redelivered_events_bill_once, usage_of
from tests.ledger.support import PRICE, eventually, ledger_settings, make_job, make_outcome, numbers, scalar
from tests.support.clickhouse_server import CLUSTER, clickhouse_nodes, docker_engine_or_skip, server_dsn

DB = "rsms_cluster_test"


def node_client(dsn: str) -> Any:
    return clickhouse_connect.get_client(dsn=dsn, autogenerate_session_id=False)


async def test_ledgers_on_a_two_replica_cluster_record_and_bill_once_and_outlive_a_killed_replica(request, tmp_path):
    docker_engine_or_skip()
    amqp_url = request.getfixturevalue("amqp_url")  # only once the test runs: a vhost takes seconds
    with clickhouse_nodes(tmp_path / "clickhouse", ["ch1", "ch2"], cluster=True) as nodes:
        dsn = server_dsn(nodes)
        hosts = host_dsns(dsn)
        ch1, ch2 = (node_client(host) for host in hosts)

        def keeper_answers() -> bool:
            try:
                return all(scalar(c, "SELECT count() FROM system.zookeeper WHERE path = '/'") > 0 for c in (ch1, ch2))
            except clickhouse_connect.driver.exceptions.DatabaseError:
                return False  # Keeper not elected or not connected yet

        await eventually(keeper_answers, timeout=120, interval=1.0, what="both replicas connected to Keeper")

        # Two ledgers starting at once, one on each replica.
        writers = [LedgerWriter(FailoverClient(hosts, connect_host, first=i), DB, CLUSTER) for i in (0, 1)]
        applied = await asyncio.gather(*(asyncio.to_thread(writer.migrate) for writer in writers))
        versions = [m.version for m in SCHEMA_MIGRATIONS]
        assert sorted(set(applied[0]) | set(applied[1])) == versions
        for client in (ch1, ch2):
            client.command(f"SYSTEM SYNC REPLICA {DB}.{MIGRATIONS_TABLE}")
            recorded = client.query(
                f"SELECT version, count() FROM {DB}.{MIGRATIONS_TABLE} GROUP BY version ORDER BY version"
            )
            assert recorded.result_rows == [(v, 1) for v in versions]  # no FINAL: one row each
            engines = dict(
                client.query(
                    "SELECT name, engine FROM system.tables WHERE database = {db:String}", parameters={"db": DB}
                ).result_rows
            )
            assert engines["sms_outcomes"] == "Distributed"
            assert engines["sms_outcomes_local"] == "ReplicatedReplacingMergeTree"

        # One batch written through ch1, then again through ch2 (a retry after a lost answer).
        job = make_job(recipients=numbers(4), segments=2)
        outcome = make_outcome(job)
        batch = [request_rows(job.model_dump_json().encode()), outcome_rows(outcome.model_dump_json().encode())]
        writers[0].write_batch(batch)
        writers[1].write_batch(batch)
        for client in (ch1, ch2):
            client.command(f"SYSTEM SYNC REPLICA {DB}.sms_outcomes_local")
            assert scalar(client, f"SELECT count() FROM {DB}.sms_requests_local") == 1
            assert scalar(client, f"SELECT count() FROM {DB}.sms_outcomes_local") == 4

        # ch2 dies; the writer that used it moves on to ch1, where a redelivery of the outcome
        # in a batch of its own (a new token) is stored again and still billed once.
        nodes[1].kill()
        assert writers[1]._client.host_index == 1
        other = make_job(project="other")
        writers[1].write_batch(
            [outcome_rows(outcome.model_dump_json().encode()), request_rows(other.model_dump_json().encode())]
        )
        assert writers[1]._client.host_index == 0
        assert scalar(ch1, f"SELECT count() FROM {DB}.sms_outcomes") == 8
        reader = LedgerReader(FailoverClient(hosts, connect_host, first=1), DB)
        assert usage_of(reader, "acme") == [(1, 4, 8, PRICE * 8)]
        assert scalar(ch1, f"SELECT count() FROM {DB}.sms_outcomes FINAL") == 4

        # A whole ledger, given both hosts, starts on the live one and bills exactly once.
        settings = ledger_settings(amqp_url, dsn, DB, clickhouse_cluster=CLUSTER)
        await redelivered_events_bill_once(settings, "beta")
