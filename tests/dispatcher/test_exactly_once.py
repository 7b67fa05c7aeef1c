"""Every recipient reaches the provider once, whatever happens to the dispatcher."""

from __future__ import annotations

from collections import Counter

from shared.topology import DISPATCH_QUEUE, LEDGER_OUTCOMES_QUEUE
from tests.dispatcher.harness import eventually, make_job, numbers, peek_events, publish
from tests.support.queues import depth


async def test_dispatcher_killed_mid_job_sends_every_recipient_exactly_once(amqp_url, simulator, start_dispatcher):
    # Ten sequential provider requests of 100 recipients, each answered slowly, so the
    # kill lands with some batches confirmed and one taken by the provider but unanswered.
    await simulator.faults(latency_ms=150)
    settings = {"RSMS_PROVIDER_BATCH_SIZE": "100", "RSMS_PROVIDER_MAX_CONCURRENT_REQUESTS": "1"}
    first = await start_dispatcher(**settings).ready()
    recipients = numbers(1000)
    job = make_job(recipients)
    await publish(amqp_url, job)

    at_kill = await eventually(simulator.stats, lambda s: s.get("delivered", 0) >= 300, what="300 sent")
    first.kill()
    assert at_kill["delivered"] < 1000, "the kill must land in the middle of the job"

    await start_dispatcher(**settings).ready()
    await eventually(simulator.stats, lambda s: s.get("delivered", 0) >= 1000, what="all 1000 sent")
    events = await eventually(
        lambda: peek_events(amqp_url, LEDGER_OUTCOMES_QUEUE.name),
        lambda e: len(e) >= 1,
        what="outcome event",
    )

    delivered = await simulator.messages()
    per_recipient = Counter(m["to"] for m in delivered)
    assert set(per_recipient) == set(recipients)
    assert set(per_recipient.values()) == {1}
    assert {m["reference"] for m in delivered} == {f"{job.message_id.hex}-{r[1:]}" for r in recipients}
    # The redelivered attempt reports everyone, with the provider's first reference.
    (event,) = events
    assert event["message_id"] == str(job.message_id) and event["attempt"] == 1
    ids = {m["to"]: m["id"] for m in delivered}
    assert {o["recipient"]: o["provider_reference"] for o in event["outcomes"]} == ids
    assert {o["status"] for o in event["outcomes"]} == {"sent"}
    assert await depth(amqp_url, DISPATCH_QUEUE.name) == 0


async def test_two_dispatchers_share_the_queue_without_sending_twice(amqp_url, simulator, start_dispatcher):
    await simulator.faults(latency_ms=5)
    dispatchers = [await start_dispatcher(RSMS_DISPATCHER_PREFETCH="8").ready() for _ in range(2)]
    jobs = [make_job(numbers(10, start=i * 10)) for i in range(150)]
    await publish(amqp_url, *jobs)

    stats = await eventually(simulator.stats, lambda s: s.get("delivered", 0) >= 1500, what="1500 sent")
    delivered = await simulator.messages()
    assert len(delivered) == 1500
    assert set(Counter(m["to"] for m in delivered).values()) == {1}
    assert stats.get("duplicate_attempts", 0) == 0
    for dispatcher in dispatchers:
        assert 'rsms_dispatcher_jobs_total{result="done"}' in await dispatcher.metrics()
    events = await eventually(
        lambda: peek_events(amqp_url, LEDGER_OUTCOMES_QUEUE.name),
        lambda e: len(e) >= 150,
        what="150 events",
    )
    assert len({e["event_id"] for e in events}) == 150
