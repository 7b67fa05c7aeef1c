"""Receipt aggregation as plain functions: a recipient's parts reported in any order."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from services.dispatcher.provider import Delivery, DeliveryStatus
from services.dispatcher.receipts import (
    FAILURES,
    PartReport,
    RecipientState,
    is_final,
    next_delivery,
    receipt_event_id,
    sent_parts,
)
from shared.contracts import ReceiptStatus
from tests.dispatcher.harness import make_job

T0 = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)


def published_statuses(parts: int, sequence: list[tuple[int, ReceiptStatus]]) -> list[ReceiptStatus]:
    """Feeds receipts in order through the store's rules (a part's first final report stays,
    its intermediate ones are replaced), publishing what `next_delivery` says to publish."""
    finals: dict[int, PartReport] = {}
    intermediate: dict[int, PartReport] = {}
    published: ReceiptStatus | None = None
    events: list[ReceiptStatus] = []
    for tick, (part, status) in enumerate(sequence):
        report = PartReport(status, "001" if status in FAILURES else None, T0 + timedelta(seconds=tick), f"c{part}")
        if is_final(status):
            finals.setdefault(part, report)
        else:
            intermediate[part] = report
        delivery = next_delivery(parts, RecipientState({**intermediate, **finals}, published))
        if delivery is not None:
            events.append(delivery.status)
            published = delivery.status
    return events


@st.composite
def all_parts_delivered(draw: st.DrawFn) -> tuple[int, list[tuple[int, ReceiptStatus]]]:
    parts = draw(st.integers(1, 6))
    receipts: list[tuple[int, ReceiptStatus]] = [(p, "delivered") for p in range(parts)]
    # Some parts also report ACCEPTD (before or after), some receipts come twice.
    receipts += [(p, "accepted") for p in draw(st.lists(st.integers(0, parts - 1), max_size=4))]
    receipts += [(p, "delivered") for p in draw(st.lists(st.integers(0, parts - 1), max_size=3))]
    return parts, draw(st.permutations(receipts))


@given(all_parts_delivered())
def test_a_recipient_is_delivered_once_when_every_part_is(case: tuple[int, list[tuple[int, ReceiptStatus]]]) -> None:
    parts, sequence = case
    events = published_statuses(parts, sequence)
    assert events.count("delivered") == 1 and events[-1] == "delivered"
    # Not before the last part's first DELIVRD came in.
    last_part_delivered = max(sequence.index((p, "delivered")) for p in range(parts))
    assert published_statuses(parts, sequence[:last_part_delivered]).count("delivered") == 0
    assert set(events) <= {"accepted", "delivered"}


@st.composite
def some_part_fails(draw: st.DrawFn) -> tuple[int, list[tuple[int, ReceiptStatus]]]:
    parts = draw(st.integers(1, 6))
    failing = draw(st.sets(st.integers(0, parts - 1), min_size=1))
    failure = st.sampled_from(sorted(FAILURES))
    receipts: list[tuple[int, ReceiptStatus]] = [
        (p, draw(failure) if p in failing else "delivered") for p in range(parts)
    ]
    receipts += [(p, "accepted") for p in draw(st.lists(st.integers(0, parts - 1), max_size=3))]
    receipts += draw(st.lists(st.sampled_from(receipts), max_size=3))  # redelivered receipts
    return parts, draw(st.permutations(receipts))


@given(some_part_fails())
def test_a_recipient_fails_once_when_any_part_fails(case: tuple[int, list[tuple[int, ReceiptStatus]]]) -> None:
    parts, sequence = case
    events = published_statuses(parts, sequence)
    finals = [status for status in events if is_final(status)]
    first_failure = next(status for _, status in sequence if status in FAILURES)
    assert finals == [first_failure]  # the first failure to arrive, and nothing after it
    assert "delivered" not in events


def test_nothing_is_published_while_parts_are_missing_or_nothing_changed() -> None:
    assert published_statuses(3, [(0, "delivered"), (2, "delivered")]) == []
    assert published_statuses(2, [(0, "accepted"), (1, "accepted"), (0, "accepted")]) == ["accepted"]


def test_event_ids_are_stable_per_recipient_and_status() -> None:
    message_id = uuid.uuid4()
    assert receipt_event_id(message_id, "+4790000001", "delivered") == receipt_event_id(
        message_id, "+4790000001", "delivered"
    )
    assert len({receipt_event_id(message_id, "+4790000001", s) for s in ("delivered", "accepted")}) == 2
    assert receipt_event_id(message_id, "+4790000001", "delivered") != receipt_event_id(
        message_id, "+4790000002", "delivered"
    )


def test_only_sent_recipients_with_carrier_ids_are_expected() -> None:
    job = make_job(["+4790000001", "+4790000002", "+4790000003"])
    parts = sent_parts(
        job,
        job.recipients,
        [
            Delivery(DeliveryStatus.SENT, "ref", carrier_ids=("a1", "a2")),
            Delivery(DeliveryStatus.TRANSIENT, detail="later"),
            Delivery(DeliveryStatus.SENT, "ref3"),
        ],
    )
    assert {cid: (p.recipient, p.part, p.parts) for cid, p in parts.items()} == {
        "a1": ("+4790000001", 0, 2),
        "a2": ("+4790000001", 1, 2),
    }
