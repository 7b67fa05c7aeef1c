"""Retry and isolation decisions of one delivery (`delivery.py`, `retry_policy.py`), with the
HTTP client and the broker replaced by recorders: the end-to-end tests run the real ones."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import structlog
from hypothesis import given
from hypothesis import strategies as st

from services.webhooks.delivery import Deliverer
from services.webhooks.endpoints import EndpointDirectory
from services.webhooks.metrics import WebhooksMetrics
from services.webhooks.retry_policy import RetryPolicy
from services.webhooks.slots import ProjectSlots
from shared.contracts import WebhookDeadLetter, WebhookDelivery
from tests.webhooks.support import write_accounts
from tests.webhooks.test_batching import events


@given(st.integers(1, 12), st.lists(st.integers(1, 10**7), min_size=1, max_size=6))
def test_backoff_follows_the_delays_and_ends_in_the_dead_letters(max_attempts: int, delays: list[int]) -> None:
    policy = RetryPolicy(max_attempts, tuple(delays))
    waits = [policy.delay_after(n) for n in range(1, max_attempts + 1)]
    assert waits[-1] is None  # after the last attempt: dead-lettered
    assert waits[:-1] == [delays[min(n, len(delays)) - 1] for n in range(1, max_attempts)]
    assert set(policy.delays_in_use()) == {w for w in waits if w is not None} | {delays[0]}
    assert [policy.backoff(n) for n in range(max_attempts)] == [delays[0], *waits[:-1]]


async def test_slots_are_per_project_and_a_few_events_may_wait_for_one() -> None:
    slots = ProjectSlots(2, waiting_events_per_project=10)
    assert await slots.acquire("a", 5, may_wait=True) and await slots.acquire("a", 5, may_wait=True)
    assert await slots.acquire("b", 5, may_wait=False)  # another project's slots are its own
    assert not await slots.acquire("a", 5, may_wait=False)  # a failing receiver's batches never wait
    assert not await slots.acquire("a", 11, may_wait=True)  # more than may wait
    first = asyncio.create_task(slots.acquire("a", 6, may_wait=True))
    await asyncio.sleep(0)
    assert slots.waiting_events("a") == 6
    assert not await slots.acquire("a", 5, may_wait=True)  # 6 + 5 would be over 10
    slots.release("a")  # handed to the waiting one
    assert await first and slots.in_use("a") == 2 and slots.waiting_events("a") == 0
    slots.release("a")
    slots.release("a")
    assert slots.in_use("a") == 0


async def test_a_waiter_that_gives_up_leaves_nothing_behind() -> None:
    slots = ProjectSlots(1, waiting_events_per_project=10)
    assert await slots.acquire("a", 1, may_wait=True)
    waiting = asyncio.create_task(slots.acquire("a", 3, may_wait=True))
    await asyncio.sleep(0)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    assert slots.waiting_events("a") == 0
    slots.release("a")
    assert slots.in_use("a") == 0


class Client:
    def __init__(self, answer: str | None = None) -> None:
        self.answer = answer
        self.calls: list[tuple[str, dict[str, str], bytes]] = []
        self.release = asyncio.Event()
        self.called = asyncio.Event()
        self.hang = False

    async def post(self, url: str, headers: dict[str, str], body: bytes) -> str | None:
        self.calls.append((url, headers, body))
        self.called.set()
        if self.hang:
            await self.release.wait()
        return self.answer


class Outbox:
    def __init__(self) -> None:
        self.retries: list[tuple[WebhookDelivery, int]] = []
        self.dead: list[WebhookDeadLetter] = []

    async def retry_later(self, delivery: WebhookDelivery, delay_ms: int) -> None:
        self.retries.append((delivery, delay_ms))

    async def dead_letter(self, letter: WebhookDeadLetter) -> None:
        self.dead.append(letter)


def deliverer(tmp_path: Path, client: Client, outbox: Outbox, per_project: int = 1, waiting: int = 0) -> Deliverer:
    path = tmp_path / "accounts.toml"
    write_accounts(path, {"acme": ("https://acme.example/hook", "whsec_0123456789abcdef"), "quiet": None})
    return Deliverer(
        EndpointDirectory(path),
        client,
        outbox,
        RetryPolicy(3, (1_000, 5_000)),
        ProjectSlots(per_project, waiting),
        WebhooksMetrics(),
        structlog.get_logger("test"),
        clock=lambda: 1_700_000_000.5,
    )


async def test_a_2xx_settles_it_signed_with_the_attempts_time(tmp_path: Path) -> None:
    client, outbox = Client(None), Outbox()
    await deliverer(tmp_path, client, outbox).deliver_new("acme", events(2))
    [(url, headers, _)] = client.calls
    assert url == "https://acme.example/hook" and headers["X-RSMS-Timestamp"] == "1700000000"
    assert outbox.retries == [] and outbox.dead == []


async def test_a_failure_is_retried_with_backoff_then_dead_lettered(tmp_path: Path) -> None:
    client, outbox = Client("HTTP 503"), Outbox()
    sender = deliverer(tmp_path, client, outbox)
    await sender.deliver_new("acme", events(1))
    [(first, delay)] = outbox.retries
    assert (first.attempts, first.last_error, delay) == (1, "HTTP 503", 1_000)
    await sender.deliver(first)
    second, delay = outbox.retries[-1]
    assert (second.attempts, delay, second.delivery_id) == (2, 5_000, first.delivery_id)
    await sender.deliver(second)
    [letter] = outbox.dead
    assert (letter.reason, letter.project, letter.detail) == ("attempts_exhausted", "acme", "HTTP 503")
    assert letter.delivery is not None and letter.delivery.attempts == 3
    assert len(client.calls) == 3


async def test_a_batch_over_the_waiting_budget_is_postponed_not_waited_on(tmp_path: Path) -> None:
    client, outbox = Client(None), Outbox()
    client.hang = True
    sender = deliverer(tmp_path, client, outbox, per_project=1, waiting=1)
    hanging = asyncio.create_task(sender.deliver_new("acme", events(1)))
    await client.called.wait()
    await sender.deliver_new("acme", events(2))  # returns at once: 2 events may not wait
    [(postponed, _)] = outbox.retries
    # Not an attempt: nothing was sent. It waits the current (first) backoff.
    assert postponed.attempts == 0 and postponed.last_error == "postponed: 1 requests to this project in flight"
    waits = asyncio.create_task(sender.deliver_new("acme", events(1)))  # 1 event may: it is sent next
    await asyncio.sleep(0)
    client.release.set()
    await hanging
    await waits
    assert len(client.calls) == 2 and len(outbox.retries) == 1


async def test_once_a_request_failed_the_projects_batches_do_not_wait(tmp_path: Path) -> None:
    client, outbox = Client("HTTP 500"), Outbox()
    sender = deliverer(tmp_path, client, outbox, per_project=1, waiting=100)
    await sender.deliver_new("acme", events(1))  # fails: the project is failing now
    client.hang = True
    client.called.clear()
    hanging = asyncio.create_task(sender.deliver_new("acme", events(1)))
    await client.called.wait()
    await sender.deliver_new("acme", events(1))  # would have waited while it answered
    assert [d.last_error for d, _ in outbox.retries] == ["HTTP 500", "postponed: 1 requests to this project in flight"]
    client.release.set()
    await hanging


async def test_a_project_without_a_webhook_gets_no_request(tmp_path: Path) -> None:
    client, outbox = Client(None), Outbox()
    await deliverer(tmp_path, client, outbox).deliver_new("quiet", events(1))
    assert client.calls == [] and outbox.retries == [] and outbox.dead == []


def test_policy_refuses_nonsense() -> None:
    with pytest.raises(ValueError):
        RetryPolicy(0, (1,))
    with pytest.raises(ValueError):
        RetryPolicy(3, ())
