"""Transient faults are retried through the broker; permanent ones are not."""

from __future__ import annotations

from collections import Counter

import pytest
from litestar.testing import AsyncTestClient
from redis.asyncio import Redis

from services.ingest.app import create_app
from shared.blocklist import Blocklist
from shared.topology import DEAD_LETTER_QUEUE, LEDGER_OUTCOMES_QUEUE
from tests.dispatcher.harness import eventually, make_job, numbers, peek_events, publish
from tests.support.accounts import add_project
from tests.support.queues import depth


async def test_thirty_percent_transient_faults_deliver_everyone_once(amqp_url, simulator, start_dispatcher):
    await simulator.faults(error_rate=0.3, recipient_error_rate=0.3)
    dispatcher = await start_dispatcher(
        RSMS_DISPATCHER_MAX_ATTEMPTS="25", RSMS_DISPATCHER_RETRY_DELAYS_MS="[50, 100, 200]"
    ).ready()
    jobs = [make_job(numbers(50, start=i * 50)) for i in range(20)]
    await publish(amqp_url, *jobs)

    stats = await eventually(simulator.stats, lambda s: s.get("delivered", 0) >= 1000, what="1000 sent")
    delivered = await simulator.messages()
    assert set(Counter(m["to"] for m in delivered).values()) == {1}
    assert len(delivered) == 1000
    assert stats.get("duplicate_attempts", 0) == 0
    assert stats["errors_5xx"] > 0 and stats["failed"] > 0

    # Retries are visible: in the metrics and as `retrying` outcomes of earlier attempts,
    # and every recipient's latest attempt says sent.
    metrics = await dispatcher.metrics()
    retries = next(line for line in metrics.splitlines() if line.startswith("rsms_dispatcher_retries_total "))
    assert float(retries.split()[1]) > 0
    events = await eventually(
        lambda: peek_events(amqp_url, LEDGER_OUTCOMES_QUEUE.name),
        lambda found: _latest_statuses(found) == {"sent": 1000},
        what="every recipient's latest outcome to be sent",
    )
    assert any(o["status"] == "retrying" for e in events for o in e["outcomes"])
    assert max(e["attempt"] for e in events) > 1
    assert await depth(amqp_url, DEAD_LETTER_QUEUE.name) == 0


def _latest_statuses(events: list[dict]) -> dict[str, int]:
    latest: dict[str, tuple[int, str]] = {}
    for event in events:
        for outcome in event["outcomes"]:
            known = latest.get(outcome["recipient"])
            if known is None or known[0] < event["attempt"]:
                latest[outcome["recipient"]] = (event["attempt"], outcome["status"])
    return dict(Counter(status for _, status in latest.values()))


@pytest.fixture
async def ingest(ingest_settings, accounts_file):
    keys = add_project(accounts_file)
    async with AsyncTestClient(app=create_app(ingest_settings)) as client:
        yield client, keys


async def test_blocked_number_is_not_retried_and_ingest_refuses_it_next_time(
    amqp_url, redis_url, simulator, start_dispatcher, ingest
):
    blocked, invalid, *others = numbers(5)
    await simulator.faults(blocked=[blocked], invalid=[invalid])
    dispatcher = await start_dispatcher().ready()
    job = make_job([blocked, invalid, *others])
    await publish(amqp_url, job)

    (event,) = await eventually(
        lambda: peek_events(amqp_url, LEDGER_OUTCOMES_QUEUE.name),
        lambda e: len(e) >= 1,
        what="outcome event",
    )
    outcomes = {o["recipient"]: o for o in event["outcomes"]}
    assert outcomes[blocked]["status"] == "failed"
    assert outcomes[blocked]["error_code"] == "RECIPIENT_BLOCKED"
    assert outcomes[blocked]["cost"] == "0"
    assert outcomes[invalid]["status"] == "failed"
    assert {outcomes[n]["status"] for n in others} == {"sent"}
    assert "rsms_dispatcher_retries_total 0.0" in await dispatcher.metrics()
    stats = await simulator.stats()
    assert stats["blocked"] == 1 and stats["invalid"] == 1

    redis = Redis.from_url(redis_url)
    try:
        assert await Blocklist(redis).members() == [blocked]
    finally:
        await redis.aclose()

    client, keys = ingest
    response = await client.post(
        "/api/v1/sms/send",
        json={"tag": "R-COV1RSMS", "recipients": [blocked], "message": "Hello again"},
        headers={"Authorization": f"Bearer {keys.live_key}"},
    )
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "RECIPIENT_BLOCKED"


async def test_out_of_credits_stops_sending_keeps_jobs_and_resumes(
    amqp_url, redis_url, simulator, start_dispatcher, ingest
):
    from shared.provider_state import ProviderState, read_provider_state
    from shared.topology import DISPATCH_QUEUE

    await simulator.faults(no_credits=True)
    dispatcher = await start_dispatcher().ready()
    jobs = [make_job(numbers(10, start=i * 10)) for i in range(3)]
    await publish(amqp_url, *jobs)

    redis = Redis.from_url(redis_url)
    try:
        await eventually(
            lambda: read_provider_state(redis),
            lambda s: s is ProviderState.NO_CREDITS,
            what="provider state",
        )
        # Consumption stopped: every job is back on the queue, none spent an attempt.
        await eventually(lambda: depth(amqp_url, DISPATCH_QUEUE.name), lambda n: n == 3, what="jobs waiting")
        assert 'rsms_dispatcher_circuit_open{provider_state="no_credits"} 1.0' in await dispatcher.metrics()

        client, keys = ingest
        response = await client.post(
            "/api/v1/sms/send",
            json={"tag": "R-COV1RSMS", "recipients": ["+4791234567"], "message": "Hello"},
            headers={"Authorization": f"Bearer {keys.live_key}"},
        )
        assert response.status_code == 500
        assert response.json()["error"]["code"] == "PROVIDER_NO_CREDITS"

        await simulator.faults(no_credits=False)
        await eventually(simulator.stats, lambda s: s.get("delivered", 0) >= 30, what="30 sent after credits")
        await eventually(
            lambda: read_provider_state(redis),
            lambda s: s is ProviderState.OK,
            what="state cleared",
        )
    finally:
        await redis.aclose()

    events = await eventually(
        lambda: peek_events(amqp_url, LEDGER_OUTCOMES_QUEUE.name), lambda e: len(e) >= 3, what="3 events"
    )
    assert {e["attempt"] for e in events} == {1}
    assert {o["status"] for e in events for o in e["outcomes"]} == {"sent"}
    assert len(await simulator.messages()) == 30
    assert await depth(amqp_url, DISPATCH_QUEUE.name) == 0


async def test_test_key_jobs_never_reach_the_provider(amqp_url, simulator, start_dispatcher):
    await start_dispatcher().ready()
    job = make_job(numbers(3), test=True)
    await publish(amqp_url, job)

    (event,) = await eventually(
        lambda: peek_events(amqp_url, LEDGER_OUTCOMES_QUEUE.name),
        lambda e: len(e) >= 1,
        what="outcome event",
    )
    assert event["test"] is True
    assert {o["status"] for o in event["outcomes"]} == {"sent"}
    assert {o["cost"] for o in event["outcomes"]} == {"0"}
    assert all(o["provider_reference"].startswith("test-") for o in event["outcomes"])
    assert (await simulator.stats()).get("requests", 0) == 0
