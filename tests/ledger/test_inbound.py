"""Inbound SMS in the ledger: one row per message whatever the broker redelivers, the text
only where the project stores bodies, an unrouted message recorded without it."""

from __future__ import annotations

from shared.topology import LEDGER_INBOUND_QUEUE
from tests.ledger.support import (
    eventually,
    ledger_settings,
    make_inbound,
    publish_inbound,
    publisher,
    running_ledger,
    scalar,
)
from tests.support.queues import depth


async def test_inbound_messages_are_recorded_once_each_with_text_only_where_allowed(amqp_url, clickhouse):
    settings = ledger_settings(amqp_url, clickhouse.dsn, clickhouse.database)
    db, client = clickhouse.database, clickhouse.client()
    stop = make_inbound("acme", "STOP", action="opt_out")
    private = make_inbound("quiet", "my secret reply", store_body=False)
    unrouted = make_inbound(None, "hello, anyone?")
    async with running_ledger(settings), publisher(amqp_url) as broker:
        for message in (stop, private, unrouted, stop, unrouted):  # the repeats: redeliveries
            await publish_inbound(broker, message)
        await eventually(lambda: scalar(client, f"SELECT count() FROM {db}.sms_inbound FINAL") == 3, what="rows")

        async def drained() -> bool:
            return await depth(amqp_url, LEDGER_INBOUND_QUEUE.name) == 0

        await eventually(drained, what="every inbound message taken off the queue")
    rows = client.query(
        f"SELECT project, event_id, sender, text, body_stored, action FROM {db}.sms_inbound FINAL ORDER BY project"
    ).result_rows
    assert [(r[0], str(r[1]), r[2], r[3], r[4], r[5]) for r in rows] == [
        ("", str(unrouted.event_id), unrouted.sender, "", False, None),
        ("acme", str(stop.event_id), stop.sender, "STOP", True, "opt_out"),
        ("quiet", str(private.event_id), private.sender, "", False, None),
    ]
    assert scalar(client, f"SELECT uniqExact(event_id) FROM {db}.sms_inbound") == 3
