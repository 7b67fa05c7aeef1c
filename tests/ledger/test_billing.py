"""Billing and status over RPC, against a ledger on chDB and the real broker.

The same events delivered twice bill once, before any merge; a status query for another
project's message answers not-found.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from shared.errors import ErrorCode, GatewayError
from shared.ledger_queries import LedgerQueries, message_status_body, parse_usage_params, usage_body
from tests.ledger.support import (
    PRICE,
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

TODAY = datetime.now(UTC).date()


async def test_the_same_events_delivered_twice_bill_once(amqp_url, clickhouse):
    # Four messages make a batch (prefetch 8) and the timer never fires first, so each round
    # below is one batch of known composition.
    settings = ledger_settings(
        amqp_url, clickhouse.dsn, clickhouse.database, ledger_prefetch=8, ledger_batch_seconds=60
    )
    db, client = clickhouse.database, clickhouse.client()
    job = make_job(recipients=numbers(4), segments=2)
    first, retry = make_outcome(job, status="retrying"), make_outcome(job, attempt=2, status="sent")
    outcome_rows = f"SELECT count() FROM {db}.sms_outcomes"
    async with running_ledger(settings), publisher(amqp_url) as broker:
        queries = LedgerQueries(broker, timeout=10)
        for event in (first, retry):
            await publish_job(broker, job)
            await publish_outcome(broker, event)
        await eventually(lambda: scalar(client, outcome_rows) == 8, what="both attempts' rows")

        # Round two, the same batch again: its insert token makes ClickHouse drop it.
        for event in (first, retry):
            await publish_job(broker, job)
            await publish_outcome(broker, event)
        await eventually(lambda: _delivered(amqp_url), what="round two taken off the queues")

        # Round three, one outcome redelivered in a batch never seen: its rows land again,
        # and only the ReplacingMergeTree key and the reads' own dedup keep it from billing twice.
        others = [make_job(project="other") for _ in range(3)]
        await publish_outcome(broker, retry)
        for other in others:
            await publish_job(broker, other)
        # (Duplicates inside one insert collapse on the way in: optimize_on_insert.)
        await eventually(
            lambda: scalar(client, f"SELECT count() FROM {db}.sms_requests") == 4,
            what="round three written",
        )
        # The requests of a batch are inserted before its outcomes: wait for those too.
        await eventually(lambda: scalar(client, outcome_rows) >= 12, what="round three's outcome rows")

        usage = await queries.usage("acme", TODAY, TODAY, "day")
        assert [(r.group, r.messages, r.recipients, r.segments, r.cost) for r in usage.rows] == [
            (TODAY.isoformat(), 1, 4, 8, PRICE * 8)
        ]
        status = await queries.message_status("acme", job.message_id)
        assert status.found and status.recipient_count == 4 and status.cost == PRICE * 8
        assert {(r.status, r.attempt) for r in status.recipients} == {("sent", 2)}
    # Stopped: every batch is written; round two left no rows, round three four.
    assert scalar(client, outcome_rows) == 12
    assert scalar(client, f"SELECT count() FROM {db}.sms_outcomes FINAL") == 8
    assert scalar(client, f"SELECT count() FROM {db}.sms_requests FINAL") == 4


async def _delivered(amqp_url: str) -> bool:
    return await depth(amqp_url, "rsms.ledger.accepted") == 0 and await depth(amqp_url, "rsms.ledger.outcomes") == 0


async def test_usage_groups_by_day_tag_and_country_and_leaves_out_tests_and_failures(amqp_url, clickhouse):
    settings = ledger_settings(amqp_url, clickhouse.dsn, clickhouse.database)
    se = ["+46701234567", "+46701234568"]
    billed = make_job(recipients=[*numbers(3), *se], tag="billing")
    alerts = make_job(recipients=numbers(2, start=41_000_000), tag="alerts", segments=3)
    failed = make_job(recipients=numbers(2, start=42_000_000), tag="alerts")
    test_job = make_job(recipients=numbers(2, start=43_000_000), tag="billing", test=True)
    other_project = make_job(project="other", recipients=numbers(5, start=44_000_000))
    async with running_ledger(settings), publisher(amqp_url) as broker:
        queries = LedgerQueries(broker, timeout=10)
        for job in (billed, alerts, failed, test_job, other_project):
            await publish_job(broker, job)
            await publish_outcome(broker, make_outcome(job, status="failed" if job is failed else "sent"))

        async def all_recorded() -> bool:
            report = await queries.usage(None, TODAY, TODAY, "tag", include_test=True)
            return sum(r.recipients for r in report.rows) == 14

        await eventually(all_recorded, what="every sent recipient")
        by_tag = await queries.usage("acme", TODAY, TODAY, "tag")
        by_country = await queries.usage("acme", TODAY, TODAY, "country")
        by_day = await queries.usage("acme", TODAY - timedelta(days=3), TODAY, "day")
        yesterday = await queries.usage("acme", TODAY - timedelta(days=1), TODAY - timedelta(days=1), "day")
        everyone = await queries.usage(None, TODAY, TODAY, "day")

    se_price = Decimal("0.80")
    assert [(r.group, r.messages, r.recipients, r.segments, r.cost) for r in by_tag.rows] == [
        ("alerts", 1, 2, 6, PRICE * 6),
        ("billing", 1, 5, 5, PRICE * 3 + se_price * 2),
    ]
    assert [(r.group, r.recipients, r.segments, r.cost) for r in by_country.rows] == [
        ("NO", 5, 9, PRICE * 9),
        ("SE", 2, 2, se_price * 2),
    ]
    assert [(r.group, r.messages, r.recipients) for r in by_day.rows] == [(TODAY.isoformat(), 2, 7)]
    assert yesterday.rows == []
    assert {(r.project, r.recipients) for r in everyone.rows} == {("acme", 7), ("other", 5)}

    body = usage_body(by_tag, parse_usage_params(TODAY.isoformat(), TODAY.isoformat(), "tag"), "NOK")
    assert body["data"]["rows"][0] == {
        "tag": "alerts",
        "messages": 1,
        "recipients": 2,
        "smsSegments": 6,
        "cost": "4.02 NOK",
    }
    # A period without rows still names its currency (issue 12: it used to say "0.00").
    empty = usage_body(yesterday, parse_usage_params(TODAY.isoformat(), TODAY.isoformat(), "day"), "NOK")
    assert empty["data"]["totals"] == {"recipients": 0, "smsSegments": 0, "cost": "0.00 NOK"}
    assert body["data"]["totals"] == {"recipients": 7, "smsSegments": 11, "cost": "7.63 NOK"}


async def test_status_reports_each_recipients_latest_attempt_and_only_to_its_own_project(amqp_url, clickhouse):
    settings = ledger_settings(amqp_url, clickhouse.dsn, clickhouse.database)
    job = make_job(recipients=numbers(5), store_body=False)
    a, b, c, d, e = job.recipients
    async with running_ledger(settings), publisher(amqp_url) as broker:
        queries = LedgerQueries(broker, timeout=10)
        await publish_job(broker, job)
        await publish_outcome(broker, make_outcome(job, status="retrying", recipients=[a, b, c]))
        await publish_outcome(broker, make_outcome(job, attempt=2, status="sent", recipients=[a]))
        await publish_outcome(broker, make_outcome(job, attempt=2, status="failed", recipients=[b]))
        # e: dead-lettered after two attempts, then replayed by an operator (attempts restart).
        await publish_outcome(broker, make_outcome(job, attempt=2, status="dead_lettered", recipients=[e]))
        await publish_outcome(broker, make_outcome(job, replay=1, status="sent", recipients=[e]))

        async def latest_seen() -> bool:
            report = await queries.message_status("acme", job.message_id)
            return (
                any(r.status == "failed" for r in report.recipients)
                and sum(r.status == "sent" for r in report.recipients) == 2
            )

        await eventually(latest_seen, what="both attempts in the status")
        status = await queries.message_status("acme", job.message_id)
        elsewhere = await queries.message_status("other-project", job.message_id)
        unknown = await queries.message_status("acme", uuid.uuid4())

    assert {r.recipient: (r.status, r.attempt) for r in status.recipients} == {
        a: ("sent", 2),
        b: ("failed", 2),
        c: ("retrying", 1),
        d: ("queued", 0),
        e: ("sent", 1),
    }
    assert status.cost == PRICE * 2 and status.tag == job.tag and status.accepted_at is not None
    body = message_status_body(status)["data"]
    assert body["status"] == "processing"
    assert body["summary"] == {
        "queued": 1,
        "sent": 2,
        "retrying": 1,
        "failed": 1,
        "deadLettered": 0,
        "delivered": 0,
        "deliveryFailed": 0,
    }
    assert body["estimatedCost"] == "3.35 NOK" and body["cost"] == "1.34 NOK"
    assert next(r for r in body["recipients"] if r["recipient"] == a)["providerReference"] == f"ref-2-{a[-4:]}"
    assert body["timestamp"].endswith("Z")

    for missing in (elsewhere, unknown):
        assert not missing.found and missing.recipients == []
        with pytest.raises(GatewayError) as raised:
            message_status_body(missing)
        assert raised.value.code == ErrorCode.VALIDATION_ERROR and raised.value.http_status == 404


async def test_concurrent_queries_each_get_their_own_answer(amqp_url, clickhouse):
    settings = ledger_settings(amqp_url, clickhouse.dsn, clickhouse.database)
    jobs = [make_job(recipients=numbers(i + 1, start=50_000_000 + 100 * i)) for i in range(12)]
    async with running_ledger(settings), publisher(amqp_url) as broker:
        queries = LedgerQueries(broker, timeout=10)
        for job in jobs:
            await publish_job(broker, job)

        async def all_recorded() -> bool:
            reports = await asyncio.gather(*(queries.message_status("acme", j.message_id) for j in jobs))
            return all(r.found for r in reports)

        await eventually(all_recorded, what="every job recorded")
        reports = await asyncio.gather(
            *(queries.message_status("acme", j.message_id) for j in jobs),
            queries.usage("acme", TODAY, TODAY, "day"),
        )
    for job, report in zip(jobs, reports[:-1], strict=True):
        assert report.message_id == job.message_id
        assert sorted(r.recipient for r in report.recipients) == sorted(job.recipients)
    assert reports[-1].kind == "usage"


async def test_a_query_with_no_ledger_running_fails_with_the_contracts_internal_error(amqp_url):
    async with publisher(amqp_url) as broker:
        with pytest.raises(GatewayError) as raised:
            await LedgerQueries(broker, timeout=0.5).usage("acme", TODAY, TODAY, "day")
    assert raised.value.code == ErrorCode.INTERNAL_ERROR
    assert "Ledger unavailable" in raised.value.message


async def test_the_body_of_an_opted_out_project_is_not_stored(amqp_url, clickhouse):
    settings = ledger_settings(amqp_url, clickhouse.dsn, clickhouse.database)
    db, client = clickhouse.database, clickhouse.client()
    kept, withheld = make_job(store_body=True), make_job(store_body=False)
    async with running_ledger(settings), publisher(amqp_url) as broker:
        await publish_job(broker, kept)
        await publish_job(broker, withheld)
        await eventually(
            lambda: scalar(client, f"SELECT count() FROM {db}.sms_requests") == 2,
            what="both requests",
        )
    stored = dict(client.query(f"SELECT toString(message_id), message FROM {db}.sms_requests").result_rows)
    assert stored == {str(kept.message_id): kept.message, str(withheld.message_id): ""}
