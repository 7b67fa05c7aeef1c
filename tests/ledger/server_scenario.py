"""The exactly-once scenario the ledger runs on a ClickHouse server and on a cluster
(test_clickhouse_server.py, tests/cluster/test_ledger_clickhouse_cluster.py): the real
ledger consumes events from the broker, the same events twice and one redelivered in a
batch of its own, and bills each recipient once."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from services.ledger.clickhouse import open_client
from services.ledger.reads import LedgerReader
from services.ledger.settings import LedgerSettings
from shared.contracts import UsageQuery
from tests.ledger.support import (
    PRICE,
    eventually,
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

LEDGER_QUEUES = ("rsms.ledger.accepted", "rsms.ledger.outcomes")


def usage_of(reader: LedgerReader, project: str) -> list[tuple[int, int, int, object]]:
    now = datetime.now(UTC)
    query = UsageQuery(
        project=project, date_from=now - timedelta(days=1), date_to=now + timedelta(days=1), group_by="day"
    )
    return [(r.messages, r.recipients, r.segments, r.cost) for r in reader.usage(query).rows]


async def redelivered_events_bill_once(settings: LedgerSettings, project: str) -> None:
    client = open_client(settings.clickhouse_dsn)
    reader = LedgerReader(client, settings.clickhouse_database)
    job = make_job(project=project, recipients=numbers(4), segments=2)
    first, retry = make_outcome(job, status="retrying"), make_outcome(job, attempt=2, status="sent")
    expected = [(1, 4, 8, PRICE * 8)]
    async with running_ledger(settings), publisher(settings.amqp_url) as broker:
        for _ in range(2):  # the second round redelivers the first
            for event in (first, retry):
                await publish_job(broker, job)
                await publish_outcome(broker, event)
        await eventually(lambda: usage_of(reader, project) == expected, timeout=60, what="the job billed")
        await publish_outcome(broker, retry)  # once more, in a batch of its own

        async def drained() -> bool:
            return all([await depth(settings.amqp_url, queue) == 0 for queue in LEDGER_QUEUES])

        await eventually(drained, timeout=60, what="every event taken off the queues")
    # Stopped: what the ledger took is written (or back on a queue, which the check below sees).
    assert await drained()
    assert usage_of(reader, project) == expected
    status = reader.message_status(project, job.message_id)
    assert status.found and status.cost == PRICE * 8
    assert {(r.status, r.attempt) for r in status.recipients} == {("sent", 2)}
    db = settings.clickhouse_database
    # Every row of the message is on one shard, so FINAL (per shard) collapses its duplicates.
    assert scalar(client, f"SELECT count() FROM {db}.sms_outcomes FINAL WHERE project = '{project}'") == 8
    assert scalar(client, f"SELECT count() FROM {db}.sms_requests FINAL WHERE project = '{project}'") == 1
