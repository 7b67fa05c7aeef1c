"""Puts one project's events that arrive together into one request.

A handler submits the events of one broker message and waits; the message is acknowledged
once its events were taken by the receiver or are safely on the retry path (`delivery.py`).
A project's batch goes out when it holds `max_events`, or `max_wait` after its first
event; a message with more events than fit is split across batches. Each project has its
own open batch, so one project's traffic never waits for another's.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from shared.contracts import WebhookEvent

Deliver = Callable[[str, list[WebhookEvent]], Awaitable[None]]


class NotDelivered(RuntimeError):
    """The events are neither delivered nor on the retry path: their message goes back to the queue."""


def split_for_batches(room: int, events: Sequence[WebhookEvent], max_events: int) -> list[list[WebhookEvent]]:
    """`events` cut to fill the open batch (`room` left in it), then whole batches."""
    chunks = [list(events[:room])] if room > 0 else []
    rest = events[max(room, 0) :]
    chunks.extend(list(rest[i : i + max_events]) for i in range(0, len(rest), max_events))
    return [chunk for chunk in chunks if chunk]


@dataclass(slots=True)
class _Batch:
    events: list[WebhookEvent] = field(default_factory=list)
    waiters: list[asyncio.Future[None]] = field(default_factory=list)
    timer: asyncio.TimerHandle | None = None


class EventBatcher:
    def __init__(self, deliver: Deliver, *, max_events: int, max_wait_seconds: float, logger: Any) -> None:
        self._deliver = deliver
        self._max_events = max_events
        self._max_wait = max_wait_seconds
        self._log = logger
        self._open: dict[str, _Batch] = {}
        self._sending: set[asyncio.Task[None]] = set()
        self._closing = False

    @property
    def closing(self) -> bool:
        return self._closing

    async def submit(self, project: str, events: Sequence[WebhookEvent]) -> None:
        """Returns once every event is delivered or on the retry path; raises `NotDelivered` otherwise."""
        if self._closing:
            raise NotDelivered("the webhook sender is stopping")
        loop = asyncio.get_running_loop()
        open_batch = self._open.get(project)
        room = self._max_events - len(open_batch.events) if open_batch else self._max_events
        waiting: list[asyncio.Future[None]] = []
        for chunk in split_for_batches(room, events, self._max_events):
            batch = self._open_batch(project, loop)
            batch.events.extend(chunk)
            waiter = loop.create_future()
            batch.waiters.append(waiter)
            waiting.append(waiter)
            if len(batch.events) >= self._max_events:
                self._flush(project)
        results = await asyncio.gather(*waiting, return_exceptions=True)
        failed = [r for r in results if isinstance(r, BaseException)]
        if failed:
            raise NotDelivered(str(failed[0])) from failed[0]

    def _open_batch(self, project: str, loop: asyncio.AbstractEventLoop) -> _Batch:
        batch = self._open.get(project)
        if batch is None:
            batch = self._open[project] = _Batch()
            batch.timer = loop.call_later(self._max_wait, self._flush, project)
        return batch

    def _flush(self, project: str) -> None:
        batch = self._open.pop(project, None)
        if batch is None:
            return
        if batch.timer is not None:
            batch.timer.cancel()
        task = asyncio.create_task(self._send(project, batch), name=f"webhook-batch-{project}")
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)

    async def _send(self, project: str, batch: _Batch) -> None:
        outcome: NotDelivered | None = NotDelivered("stopped before the receiver answered")
        try:
            await self._deliver(project, batch.events)
            outcome = None
        except Exception as error:
            self._log.error(
                "webhooks.batch_not_settled", project=project, events=len(batch.events), error=type(error).__name__
            )
            outcome = NotDelivered(type(error).__name__)
        finally:
            for waiter in batch.waiters:
                if waiter.done():
                    continue
                if outcome is None:
                    waiter.set_result(None)
                else:
                    waiter.set_exception(outcome)

    async def close(self, timeout: float) -> None:  # noqa: ASYNC109 -- a shutdown deadline
        """Send what is open and wait (up to `timeout`) for the requests in flight."""
        self._closing = True
        for project in list(self._open):
            self._flush(project)
        if self._sending:
            _, pending = await asyncio.wait(set(self._sending), timeout=timeout)
            for task in pending:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
