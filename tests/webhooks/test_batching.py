"""Batching decisions: one project's events that arrive together share a request, split at
the maximum, never mixed with another project's (`services/webhooks/batcher.py`)."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime

import pytest
import structlog
from hypothesis import given
from hypothesis import strategies as st

from services.webhooks.batcher import EventBatcher, NotDelivered, split_for_batches
from shared.contracts import WebhookEvent

NOW = datetime(2026, 11, 25, tzinfo=UTC)


def events(count: int, project: str = "acme") -> list[WebhookEvent]:
    return [
        WebhookEvent(
            id=uuid.uuid4(),
            type="message.sent",
            project=project,
            status="sent",
            occurred_at=NOW,
            created_at=NOW,
            recipient=f"+4790{i:06d}",
        )
        for i in range(count)
    ]


@given(st.integers(0, 10), st.integers(0, 60), st.integers(1, 10))
def test_split_fills_the_open_batch_then_whole_batches(room: int, count: int, max_events: int) -> None:
    room = min(room, max_events)
    given_events = events(count)
    chunks = split_for_batches(room, given_events, max_events)
    assert [e for chunk in chunks for e in chunk] == given_events
    assert all(chunk for chunk in chunks)
    if chunks and room:
        assert len(chunks[0]) <= room
    assert all(len(chunk) <= max_events for chunk in chunks)
    assert all(len(chunk) == max_events for chunk in chunks[1 if room else 0 : -1])


class Recorder:
    def __init__(self, fail: bool = False) -> None:
        self.requests: list[tuple[str, list[WebhookEvent]]] = []
        self.fail = fail

    async def deliver(self, project: str, batch: list[WebhookEvent]) -> None:
        self.requests.append((project, list(batch)))
        if self.fail:
            raise ConnectionError("broker refused the retry")


def batcher(recorder: Recorder, max_events: int = 10) -> EventBatcher:
    return EventBatcher(
        recorder.deliver, max_events=max_events, max_wait_seconds=0.01, logger=structlog.get_logger("test")
    )


async def test_events_arriving_together_go_in_one_request_per_project() -> None:
    recorder = Recorder()
    sender = batcher(recorder)
    acme, other = events(3), events(2, "other")
    await asyncio.gather(
        sender.submit("acme", acme[:1]),
        sender.submit("acme", acme[1:]),
        sender.submit("other", other),
    )
    assert sorted((p, [e.id for e in batch]) for p, batch in recorder.requests) == sorted(
        [("acme", [e.id for e in acme]), ("other", [e.id for e in other])]
    )


async def test_a_message_with_more_events_than_fit_is_split_and_settled_when_all_are() -> None:
    recorder = Recorder()
    sender = batcher(recorder, max_events=4)
    many = events(10)
    await sender.submit("acme", many)
    assert [len(batch) for _, batch in recorder.requests] == [4, 4, 2]
    assert [e for _, batch in recorder.requests for e in batch] == many


async def test_events_not_settled_raise_so_their_message_goes_back() -> None:
    sender = batcher(Recorder(fail=True))
    with pytest.raises(NotDelivered):
        await sender.submit("acme", events(2))


async def test_a_closing_batcher_takes_nothing_new() -> None:
    sender = batcher(Recorder())
    await sender.close(1.0)
    with pytest.raises(NotDelivered):
        await sender.submit("acme", events(1))
