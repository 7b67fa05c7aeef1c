"""Dead letters, replay, and a clean SIGTERM."""

from __future__ import annotations

import asyncio
import json

from click.testing import CliRunner

from cli.dlq import dlq
from shared.topology import DEAD_LETTER_QUEUE, DISPATCH_QUEUE, LEDGER_OUTCOMES_QUEUE
from tests.dispatcher.harness import eventually, make_job, numbers, peek, peek_events, publish
from tests.support.queues import depth


async def _cli(amqp_url: str, *args: str, input: str | None = None):
    # The command runs its own event loop, so not on this one.
    result = await asyncio.to_thread(CliRunner().invoke, dlq, list(args), env={"RSMS_AMQP_URL": amqp_url}, input=input)
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    return result


async def test_poison_jobs_are_dead_lettered_and_failed_jobs_replayed_after_the_fix(
    amqp_url, simulator, start_dispatcher
):
    dispatcher = await start_dispatcher(RSMS_DISPATCHER_MAX_ATTEMPTS="2").ready()
    future_schema = make_job(numbers(1)).model_dump(mode="json") | {"schema_version": 2}
    await publish(amqp_url, b"{not json", json.dumps(future_schema).encode())

    letters = await eventually(
        lambda: peek(amqp_url, DEAD_LETTER_QUEUE.name), lambda d: len(d) >= 2, what="2 dead letters"
    )
    assert {d["reason"] for d in letters} == {"invalid_job"}
    assert any("schema_version" in d["detail"] for d in letters)
    assert all("+4790" not in d["detail"] for d in letters)  # never a number in the reason

    # A provider failing every request: two attempts, then the dead-letter queue.
    await simulator.faults(error_rate=1.0)
    job = make_job(numbers(4, start=100))
    await publish(amqp_url, job)
    letters = await eventually(
        lambda: peek(amqp_url, DEAD_LETTER_QUEUE.name), lambda d: len(d) >= 3, what="3 dead letters"
    )
    exhausted = next(d for d in letters if d["reason"] == "attempts_exhausted")
    assert exhausted["message_id"] == str(job.message_id) and exhausted["attempts"] == 2
    assert sorted(exhausted["job"]["recipients"]) == sorted(job.recipients)
    assert dispatcher.process.poll() is None, "a poison job must not take the dispatcher down"

    listed = await _cli(amqp_url, "list")
    assert "attempts_exhausted" in listed.output and "invalid_job" in listed.output
    assert str(job.message_id) in listed.output

    await simulator.faults(error_rate=0.0)
    replayed = await _cli(amqp_url, "replay")
    assert "Replayed 1 job(s), 4 recipient(s)." in replayed.output
    await eventually(simulator.stats, lambda s: s.get("delivered", 0) >= 4, what="replayed job sent")
    assert sorted(m["to"] for m in await simulator.messages()) == sorted(job.recipients)
    events = await eventually(
        lambda: peek_events(amqp_url, LEDGER_OUTCOMES_QUEUE.name),
        lambda e: len(e) >= 3,
        what="replay's event",
    )
    assert len({e["event_id"] for e in events}) == 3  # the replay is not mistaken for attempt 1
    replay_events = [e for e in events if e["replay"] == 1]
    assert [(e["attempt"], e["outcomes"][0]["status"]) for e in replay_events] == [(1, "sent")]
    assert await depth(amqp_url, DEAD_LETTER_QUEUE.name) == 2  # the invalid ones stay

    refused = await _cli(amqp_url, "purge", input="n\n")
    assert await depth(amqp_url, DEAD_LETTER_QUEUE.name) == 2, refused.output
    await _cli(amqp_url, "purge", "--yes")
    assert await depth(amqp_url, DEAD_LETTER_QUEUE.name) == 0
    assert "empty" in (await _cli(amqp_url, "list")).output


async def test_sigterm_finishes_in_flight_sends_then_exits(amqp_url, simulator, start_dispatcher):
    await simulator.faults(latency_ms=600)
    dispatcher = await start_dispatcher().ready()
    job = make_job(numbers(10))
    await publish(amqp_url, job)
    # The provider has the batch; its answer is still 0.6 s away.
    await eventually(simulator.stats, lambda s: s.get("delivered", 0) >= 10, what="batch at the provider")

    assert await dispatcher.terminate() == 0
    assert "dispatcher stopped" in dispatcher.output()
    (event,) = await peek_events(amqp_url, LEDGER_OUTCOMES_QUEUE.name)
    assert {o["status"] for o in event["outcomes"]} == {"sent"}
    assert await depth(amqp_url, DISPATCH_QUEUE.name) == 0  # acknowledged, not handed back
    assert (await simulator.stats()).get("duplicate_attempts", 0) == 0
