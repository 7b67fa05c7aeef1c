"""kill -9 of a dispatcher while a window of submit_sm is outstanding at the SMSC.

An SMSC has no idempotency reference: a recipient whose submit_sm was written but not
answered when the process died may or may not be on its way to a handset. The next
dispatcher must not submit it again blindly; it holds it in `rsms dlq` (reason
outcome_unknown) for an operator. A job claims its recipients a provider batch at a time
(half the window each, two at once), so the held are only those that may have reached the
SMSC: the ones never written are sent after the restart. Counted at the SMSC: nobody
twice, everybody either sent or held, and nobody held who was not submitted.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections import Counter
from collections.abc import Callable

from shared.topology import DEAD_LETTER_QUEUE, DISPATCH_QUEUE, LEDGER_OUTCOMES_QUEUE
from tests.dispatcher.harness import ROOT, Dispatcher, eventually, make_job, numbers, peek, peek_events, publish
from tests.support.queues import depth
from tests.support.smsc import TestSmsc

# Window 10 answered 150 ms late: about 65 submits a second, so a 200-recipient job takes
# three seconds and the kill lands with ten submits unanswered. The batch size asked for
# (20) is more than the window: over SMPP a batch is at most half of it (5), and each is
# recorded as it completes, so most of the job is settled or unclaimed at the kill.
WINDOW = 10
SETTINGS = {
    "RSMS_SMPP_WINDOW": str(WINDOW),
    "RSMS_PROVIDER_BATCH_SIZE": "20",
    "RSMS_PROVIDER_MAX_CONCURRENT_REQUESTS": "4",
}


def dlq_listing(amqp_url: str) -> list[dict[str, object]]:
    """`rsms dlq list --json`, as an operator runs it."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RSMS_")}
    env.update(RSMS_AMQP_URL=amqp_url, PYTHONPATH=str(ROOT))
    run = subprocess.run(
        [sys.executable, "-m", "cli", "dlq", "list", "--json"], env=env, capture_output=True, text=True, timeout=60
    )
    assert run.returncode == 0, run.stderr
    listing: list[dict[str, object]] = json.loads(run.stdout)
    return listing


async def test_kill_9_mid_window_loses_nobody_and_submits_nobody_twice(
    amqp_url: str, smsc: TestSmsc, start_smpp_dispatcher: Callable[..., Dispatcher]
) -> None:
    await smsc.command(delay_ms=150)
    first = await start_smpp_dispatcher(**SETTINGS).ready()
    recipients = numbers(200)
    job = make_job(recipients)
    await publish(amqp_url, job)

    await smsc.wait_for("submit_sm", 60, within=30)
    first.kill()
    at_kill = [p["destination_addr"] for p in smsc.records("submit_sm")]
    assert 60 <= len(at_kill) < 200, "the kill must land in the middle of the job"

    await start_smpp_dispatcher(**SETTINGS).ready()
    (event,) = await eventually(
        lambda: peek_events(amqp_url, LEDGER_OUTCOMES_QUEUE.name), lambda e: len(e) >= 1, what="the outcome event"
    )
    await eventually(lambda: depth(amqp_url, DISPATCH_QUEUE.name), lambda n: n == 0, what="the job acknowledged")
    await asyncio.sleep(1.0)  # anything the second dispatcher would (wrongly) submit arrives now

    # Nothing submitted twice.
    at_smsc = Counter(p["destination_addr"] for p in smsc.records("submit_sm"))
    assert max(at_smsc.values()) == 1, [d for d, n in at_smsc.items() if n > 1]

    # Nothing lost: each recipient is sent (and was submitted) or held for the operator.
    status = {o["recipient"]: o["status"] for o in event["outcomes"]}
    assert set(status) == set(recipients)
    sent = {r for r, s in status.items() if s == "sent"}
    held = {r for r, s in status.items() if s == "dead_lettered"}
    assert sent | held == set(recipients)
    assert {r[1:] for r in sent} <= set(at_smsc)
    # The held are the submits that were in the window when the process died, and any
    # answered a moment before whose record had not reached Redis: all of them reached the
    # SMSC, none of their outcomes the gateway. Nobody who was never submitted is held
    # (the second dispatcher sent those, once).
    assert {r[1:] for r in held} & set(at_kill), "submits must be outstanding when the kill lands"
    assert {r[1:] for r in held} <= set(at_smsc)
    assert len(held) <= 2 * WINDOW, len(held)
    assert all("may have sent it" in o["error_message"] for o in event["outcomes"] if o["status"] == "dead_lettered")

    (letter,) = await peek(amqp_url, DEAD_LETTER_QUEUE.name)
    assert letter["reason"] == "outcome_unknown"
    assert set(letter["job"]["recipients"]) == held
    (row,) = dlq_listing(amqp_url)
    assert (row["reason"], row["message_id"], row["recipients"]) == ("outcome_unknown", str(job.message_id), len(held))
