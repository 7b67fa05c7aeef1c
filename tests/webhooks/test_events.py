"""Which broker messages become which webhook events (`services/webhooks/events.py`)."""

from __future__ import annotations

import pytest

from services.webhooks.events import (
    by_project,
    inbound_events,
    outcome_events,
    outcome_message_events,
    receipt_events,
)
from shared.contracts import OutcomeBatch
from tests.webhooks.support import inbound, outcome, receipt


def test_an_outcome_gives_one_event_per_settled_recipient() -> None:
    source = outcome(
        "acme",
        {"+4790000001": "sent", "+4790000002": "failed", "+4790000003": "retrying", "+4790000004": "dead_lettered"},
        test=True,
    )
    events = outcome_events(source)
    assert [(e.recipient, e.type, e.status, e.error_code) for e in events] == [
        ("+4790000001", "message.sent", "sent", None),
        ("+4790000002", "message.failed", "failed", "RECIPIENT_BLOCKED"),
        ("+4790000004", "message.failed", "dead_lettered", "RECIPIENT_BLOCKED"),
    ]
    assert {(e.project, e.message_id, e.test, e.occurred_at) for e in events} == {
        ("acme", source.message_id, True, source.occurred_at)
    }
    assert outcome_events(source) == events  # a redelivered outcome gives the same ids
    assert len({e.id for e in events}) == 3


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        ("delivered", "message.delivered"),
        ("undelivered", "message.failed"),
        ("expired", "message.failed"),
        ("rejected", "message.failed"),
        ("deleted", "message.failed"),
        ("accepted", None),
        ("unknown", None),
    ],
)
def test_final_receipts_become_events(status: str, kind: str | None) -> None:
    source = receipt("acme", "+4790000001", status)
    events = receipt_events(source)
    assert [e.type for e in events] == ([kind] if kind else [])
    for e in events:
        assert (e.status, e.error_code, e.recipient, e.message_id) == (
            status,
            source.error_code,
            "+4790000001",
            source.message_id,
        )
        assert (e.occurred_at, e.created_at) == (source.occurred_at, source.received_at)


def test_inbound_messages_of_a_project_become_events_and_nobodys_are_not() -> None:
    source = inbound("acme", "STOP")
    [event] = inbound_events(source)
    wire = event.wire()
    assert (wire["type"], wire["from"], wire["to"], wire["text"], wire["status"]) == (
        "message.inbound",
        "+4798765432",
        "2222",
        "STOP",
        "received",
    )
    assert "messageId" not in wire and "recipient" not in wire
    assert inbound_events(inbound(None)) == []


def test_outbound_events_have_the_shared_field_names() -> None:
    [event] = receipt_events(receipt("acme"))
    assert set(event.wire()) == {
        "id",
        "type",
        "project",
        "messageId",
        "recipient",
        "status",
        "errorCode",
        "occurredAt",
        "createdAt",
        "test",
    }


def test_an_outcome_batch_gives_the_events_its_outcomes_would_each_have_given_per_project() -> None:
    first = outcome("acme", {"+4790000001": "sent", "+4790000002": "retrying"})
    second = outcome("other", {"+4790000003": "failed"})
    third = outcome("acme", {"+4790000004": "sent"})
    events = outcome_message_events(OutcomeBatch(events=[first, second, third]))
    assert events == outcome_events(first) + outcome_events(second) + outcome_events(third)
    assert outcome_message_events(first) == outcome_events(first)
    projects = by_project(events)
    assert list(projects) == ["acme", "other"]
    assert [e.recipient for e in projects["acme"]] == ["+4790000001", "+4790000004"]
    assert [e.recipient for e in projects["other"]] == ["+4790000003"]
