"""A real dispatcher process sending through SMPP to the test SMSC."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

from redis.asyncio import Redis

from shared.provider_state import ProviderState, read_provider_state
from shared.segments import count_segments
from shared.topology import DEAD_LETTER_QUEUE, DISPATCH_QUEUE, LEDGER_OUTCOMES_QUEUE
from tests.dispatcher.harness import Dispatcher, eventually, make_job, numbers, peek, peek_events, publish
from tests.support.queues import depth
from tests.support.smsc import TestSmsc

TEXT = "A longer message, so that it goes in parts: " * 5


async def test_a_job_goes_out_part_by_part_once_per_recipient(
    amqp_url: str, smsc: TestSmsc, start_smpp_dispatcher: Callable[..., Dispatcher]
) -> None:
    await start_smpp_dispatcher(RSMS_SMPP_WINDOW="10").ready()
    recipients = numbers(40)
    job = make_job(recipients, message=TEXT)
    await publish(amqp_url, job)
    (event,) = await eventually(lambda: peek_events(amqp_url, LEDGER_OUTCOMES_QUEUE.name), lambda e: len(e) >= 1)
    assert {o["status"] for o in event["outcomes"]} == {"sent"}
    segments = count_segments(TEXT).segments
    per_destination = Counter(p["destination_addr"] for p in smsc.records("submit_sm"))
    assert per_destination == {r[1:]: segments for r in recipients}


async def test_bind_refused_opens_the_circuit_and_sending_resumes_after(
    amqp_url: str, redis_url: str, smsc: TestSmsc, start_smpp_dispatcher: Callable[..., Dispatcher]
) -> None:
    await smsc.command(refuse_binds=0x0E)  # ESME_RINVPASWD
    await start_smpp_dispatcher().ready()
    await publish(amqp_url, make_job(numbers(5)))
    redis = Redis.from_url(redis_url)
    try:
        await eventually(lambda: read_provider_state(redis), lambda s: s is ProviderState.AUTH_ERROR, what="auth")
        await eventually(lambda: depth(amqp_url, DISPATCH_QUEUE.name), lambda n: n == 1, what="job kept")
        assert smsc.records("submit_sm") == []
        await smsc.command(refuse_binds=None)
        await eventually(lambda: read_provider_state(redis), lambda s: s is ProviderState.OK, what="circuit closed")
    finally:
        await redis.aclose()
    await smsc.wait_for("submit_sm", 5)
    assert len(smsc.records("submit_sm")) == 5


async def test_smsc_dropping_every_connection_mid_window_holds_the_unanswered_and_sends_the_rest(
    amqp_url: str, smsc: TestSmsc, start_smpp_dispatcher: Callable[..., Dispatcher]
) -> None:
    await start_smpp_dispatcher(RSMS_SMPP_WINDOW="10").ready()
    await smsc.command(hold=True, drop_after=10)  # the first 10 submits are never answered
    recipients = numbers(30)
    await publish(amqp_url, make_job(recipients))

    (letter,) = await eventually(lambda: peek(amqp_url, DEAD_LETTER_QUEUE.name), lambda d: len(d) >= 1, what="held")
    events = await eventually(
        lambda: peek_events(amqp_url, LEDGER_OUTCOMES_QUEUE.name),
        lambda e: sum(o["status"] in ("sent", "dead_lettered") for ev in e for o in ev["outcomes"]) >= 30,
        what="every recipient settled",
    )
    settled = {o["recipient"]: o["status"] for ev in events for o in ev["outcomes"] if o["status"] != "retrying"}
    held = {r for r, s in settled.items() if s == "dead_lettered"}
    sent = {r for r, s in settled.items() if s == "sent"}
    dropped = [r["unanswered"] for r in smsc.records("dropped_connections")]
    assert dropped == [10] and len(held) == 10 and sent | held == set(recipients)
    assert letter["reason"] == "outcome_unknown" and set(letter["job"]["recipients"]) == held
    unanswered = {p["destination_addr"] for p in smsc.records("submit_sm")[:10]}
    assert {r[1:] for r in held} == unanswered  # exactly the window that was never answered
    # The held ones reached the SMSC once; the others once, after the bind came back.
    per_destination = Counter(p["destination_addr"] for p in smsc.records("submit_sm"))
    assert per_destination == {r[1:]: 1 for r in recipients}
