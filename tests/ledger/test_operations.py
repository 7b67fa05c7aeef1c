"""What an operator sees: probes and metrics, dead-lettered bodies, `rsms usage`."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import aio_pika
import httpx
from click.testing import CliRunner

from cli.usage import sms_status, usage
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
from tests.support.queues import drain

TODAY = datetime.now(UTC).date().isoformat()


async def test_probes_and_metrics_answer_and_count_what_was_written(amqp_url, clickhouse):
    settings = ledger_settings(amqp_url, clickhouse.dsn, clickhouse.database)
    base = f"http://127.0.0.1:{settings.ledger_http_port}"
    job = make_job(recipients=numbers(7))
    async with running_ledger(settings), publisher(amqp_url) as broker, httpx.AsyncClient() as http:
        assert (await http.get(f"{base}/health/live")).status_code == 200
        assert (await http.get(f"{base}/health/ready")).status_code == 200
        await publish_job(broker, job)
        await publish_outcome(broker, make_outcome(job))

        async def counted() -> bool:
            text = (await http.get(f"{base}/metrics")).text
            return 'rsms_ledger_rows_written_total{table="sms_outcomes"} 7.0' in text

        await eventually(counted, what="7 outcome rows in the metrics")
        text = (await http.get(f"{base}/metrics")).text
    for name in (
        "rsms_ledger_batch_rows_bucket",
        "rsms_ledger_insert_seconds_bucket",
        "rsms_ledger_events_consumed_total",
        "rsms_ledger_queue_depth",
        "rsms_ledger_clickhouse_up 1.0",
    ):
        assert name in text


async def test_a_body_the_ledger_cannot_record_goes_to_its_dead_letter_queue(amqp_url, clickhouse):
    settings = ledger_settings(amqp_url, clickhouse.dsn, clickhouse.database)
    good = make_job(recipients=numbers(2))
    async with running_ledger(settings), publisher(amqp_url) as broker:
        connection = await aio_pika.connect(amqp_url)
        async with connection:
            channel = await connection.channel()
            exchange = await channel.get_exchange("rsms.outcomes")
            await exchange.publish(aio_pika.Message(b'{"schema_version": 7}'), routing_key="")
        await publish_outcome(broker, make_outcome(good))
        dead = await drain(amqp_url, "rsms.ledger.dead", expect=1, wait=30)
        client = clickhouse.client()
        await eventually(
            lambda: scalar(client, f"SELECT count() FROM {clickhouse.database}.sms_outcomes") == 2,
            what="the good event written",
        )
    assert dead[0]["body"] == {"schema_version": 7}


async def test_rsms_usage_and_sms_status_ask_the_running_ledger(amqp_url, clickhouse, monkeypatch):
    settings = ledger_settings(amqp_url, clickhouse.dsn, clickhouse.database)
    job = make_job(recipients=numbers(2), tag="billing")
    monkeypatch.setenv("RSMS_AMQP_URL", amqp_url)
    runner = CliRunner()
    async with running_ledger(settings), publisher(amqp_url) as broker:
        await publish_job(broker, job)
        await publish_outcome(broker, make_outcome(job))
        client = clickhouse.client()
        await eventually(
            lambda: scalar(client, f"SELECT count() FROM {clickhouse.database}.sms_outcomes") == 2,
            what="rows written",
        )
        # The CLI runs its own event loop: give it a thread of its own.
        import asyncio

        by_tag = await asyncio.to_thread(
            runner.invoke,
            usage,
            ["--from", TODAY, "--to", TODAY, "--group-by", "tag", "--project", "acme"],
        )
        by_tag_json = await asyncio.to_thread(
            runner.invoke,
            usage,
            ["--from", TODAY, "--to", TODAY, "--group-by", "tag", "--project", "acme", "--json"],
        )
        status = await asyncio.to_thread(runner.invoke, sms_status, ["acme", str(job.message_id)])
        status_json = await asyncio.to_thread(runner.invoke, sms_status, ["acme", str(job.message_id), "--json"])
        missing = await asyncio.to_thread(runner.invoke, sms_status, ["other", str(job.message_id)])
    assert by_tag.exit_code == 0, by_tag.output
    lines = by_tag.output.splitlines()
    assert lines[0].split() == ["project", "tag", "messages", "recipients", "segments", "cost"]
    assert lines[2].split() == ["acme", "billing", "1", "2", "2", "1.34", "NOK"]
    assert status.exit_code == 0, status.output
    assert sum(" sent " in line for line in status.output.splitlines()) == 2
    assert missing.exit_code != 0 and "no message" in missing.output
    assert json.loads(by_tag_json.output) == [
        {"project": "acme", "tag": "billing", "messages": 1, "recipients": 2, "segments": 2, "cost": "1.34 NOK"}
    ]
    document = json.loads(status_json.output)
    assert document["message_id"] == str(job.message_id) and document["billed"] == "1.34 NOK"
    assert [r["status"] for r in document["recipients"]] == ["sent", "sent"]
