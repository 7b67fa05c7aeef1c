"""Events from the real broker into chDB: every row once, however often it is delivered."""

from __future__ import annotations

from tests.ledger.support import (
    eventually,
    ledger_settings,
    make_job,
    make_outcome,
    numbers,
    publish_job,
    publish_outcome,
    publisher,
    running_ledger,
    scalar,
)
from tests.support.queues import depth


async def test_accepted_and_outcome_events_land_as_rows_and_are_acked(amqp_url, clickhouse):
    settings = ledger_settings(amqp_url, clickhouse.dsn, clickhouse.database)
    db = clickhouse.database
    client = clickhouse.client()
    job = make_job(recipients=numbers(5))
    async with running_ledger(settings), publisher(amqp_url) as broker:
        await publish_job(broker, job)
        await publish_outcome(broker, make_outcome(job))
        await eventually(
            lambda: scalar(client, f"SELECT count() FROM {db}.sms_outcomes") == 5,
            what="5 outcome rows",
        )
        await eventually(
            lambda: scalar(client, f"SELECT count() FROM {db}.sms_requests") == 1,
            what="the request row",
        )
        await eventually(lambda: _queues_empty(amqp_url), what="both ledger queues acked")
    row = client.query(
        f"SELECT project, recipient_count, total_segments, message, key_id FROM {db}.sms_requests"
    ).result_rows[0]
    assert row == ("acme", 5, 5, job.message, "key-1")


async def _queues_empty(amqp_url: str) -> bool:
    return (
        await depth(amqp_url, "rsms.ledger.accepted"),
        await depth(amqp_url, "rsms.ledger.outcomes"),
    ) == (0, 0)
