"""Receipts from a real SMSC (the npm smpp test server) through a real dispatcher process:
one `ReceiptEvent` per recipient once every part is reported, a failure with its err code."""

from __future__ import annotations

from collections.abc import Callable

from shared.contracts import ReceiptEvent
from shared.segments import count_segments
from shared.topology import LEDGER_RECEIPTS_QUEUE
from tests.dispatcher.harness import Dispatcher, make_job, numbers, publish
from tests.support.queues import drain
from tests.support.smsc import TestSmsc

TEXT = "A longer message, so that it goes in parts: " * 5


async def test_each_recipient_gets_one_event_once_every_part_is_delivered(
    amqp_url: str, smsc: TestSmsc, start_smpp_dispatcher: Callable[..., Dispatcher]
) -> None:
    await smsc.command(receipts={"stat": "DELIVRD", "err": "000"})
    await start_smpp_dispatcher().ready()
    recipients = numbers(5)
    job = make_job(recipients, message=TEXT)
    await publish(amqp_url, job)
    parts = count_segments(TEXT).segments
    assert parts > 1
    answered = await smsc.wait_for("deliver_sm_resp", 5 * parts, within=30)
    assert len(answered) == 5 * parts and {r["status"] for r in answered} == {
        0
    }  # every part's receipt taken, after it was published
    events = [
        ReceiptEvent.model_validate(m["body"]) for m in await drain(amqp_url, LEDGER_RECEIPTS_QUEUE.name, expect=5)
    ]
    assert sorted(e.recipient for e in events) == recipients
    assert {(e.message_id, e.status, e.final, e.error_code) for e in events} == {
        (job.message_id, "delivered", True, None)
    }
    assert await drain(amqp_url, LEDGER_RECEIPTS_QUEUE.name, wait=1) == []  # one per recipient, not per part


async def test_an_undelivered_receipt_fails_the_recipient_with_its_error(
    amqp_url: str, smsc: TestSmsc, start_smpp_dispatcher: Callable[..., Dispatcher]
) -> None:
    await smsc.command(receipts={"stat": "UNDELIV", "err": "034"})
    await start_smpp_dispatcher().ready()
    job = make_job(numbers(1), message="Short")
    await publish(amqp_url, job)
    [message] = await drain(amqp_url, LEDGER_RECEIPTS_QUEUE.name, expect=1, wait=30)
    event = ReceiptEvent.model_validate(message["body"])
    assert (event.message_id, event.status, event.final, event.error_code) == (
        job.message_id,
        "undelivered",
        True,
        "034",
    )
