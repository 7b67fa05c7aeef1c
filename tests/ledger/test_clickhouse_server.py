"""The ledger on a ClickHouse server (Docker): migrations, inserts and reads over HTTP, and
a redelivered event billed once. Skipped where no Docker engine answers (see
tests/support/clickhouse_server.py); every other ledger test runs on embedded chDB."""

from __future__ import annotations

from services.ledger.clickhouse import LedgerWriter, open_client
from services.ledger.schema import MIGRATIONS_TABLE, SCHEMA_MIGRATIONS
from tests.ledger.server_scenario import redelivered_events_bill_once
from tests.ledger.support import ledger_settings, scalar
from tests.support.clickhouse_server import clickhouse_nodes, docker_engine_or_skip, server_dsn


async def test_the_ledger_on_a_clickhouse_server_bills_a_redelivered_event_once(request, tmp_path):
    docker_engine_or_skip()
    amqp_url = request.getfixturevalue("amqp_url")  # only once the test runs: a vhost takes seconds
    with clickhouse_nodes(tmp_path / "clickhouse", ["ch1"], cluster=False) as nodes:
        dsn = server_dsn(nodes)
        database = "rsms_server_test"
        await redelivered_events_bill_once(ledger_settings(amqp_url, dsn, database), "acme")
        client = open_client(dsn)
        assert LedgerWriter(client, database).migrate() == []
        versions = f"SELECT count() FROM {database}.{MIGRATIONS_TABLE}"
        assert scalar(client, versions) == len(SCHEMA_MIGRATIONS)
