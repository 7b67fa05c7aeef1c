"""Requests in flight per project, and the few deliveries that may wait for one.

Each project has `per_project` slots. A delivery that finds them taken may wait for one,
but only while the project's receiver answers (the caller says so) and only as long as
the events waiting for the project stay within `waiting_events_per_project` (what waits
holds its broker messages unacknowledged); any other is refused at once and goes to the
retry path. So a burst to a healthy receiver is sent as fast as it answers,
and a receiver that hangs holds at most its own slots: nothing of another project's
ever waits behind it.
"""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass, field


@dataclass(slots=True)
class _Project:
    in_use: int = 0
    waiters: deque[tuple[asyncio.Future[None], int]] = field(default_factory=deque)
    waiting_events: int = 0


class ProjectSlots:
    def __init__(self, per_project: int, waiting_events_per_project: int) -> None:
        self.per_project = per_project
        self.waiting_events_per_project = waiting_events_per_project
        self._projects: dict[str, _Project] = {}

    async def acquire(self, project: str, events: int, *, may_wait: bool) -> bool:
        """True once a slot is the caller's (give it back with `release`); False at once when
        none is free and the caller may not wait, or its `events` would be too many waiting."""
        state = self._projects.setdefault(project, _Project())
        if state.in_use < self.per_project and not state.waiters:
            state.in_use += 1
            return True
        if not may_wait or state.waiting_events + events > self.waiting_events_per_project:
            self._forget_if_idle(project)
            return False
        entry = (asyncio.get_running_loop().create_future(), events)
        state.waiters.append(entry)
        state.waiting_events += events
        try:
            await entry[0]  # `release` hands its slot over: `in_use` stays as it is
        except asyncio.CancelledError:
            if entry[0].done() and not entry[0].cancelled():
                self.release(project)  # handed over just as the caller gave up
            else:
                state.waiters.remove(entry)
                state.waiting_events -= events
                self._forget_if_idle(project)
            raise
        return True

    def release(self, project: str) -> None:
        state = self._projects[project]
        while state.waiters:
            waiter, events = state.waiters.popleft()
            state.waiting_events -= events
            if not waiter.done():
                waiter.set_result(None)
                return
        state.in_use -= 1
        self._forget_if_idle(project)

    def in_use(self, project: str) -> int:
        state = self._projects.get(project)
        return state.in_use if state else 0

    def waiting_events(self, project: str) -> int:
        state = self._projects.get(project)
        return state.waiting_events if state else 0

    def _forget_if_idle(self, project: str) -> None:
        state = self._projects.get(project)
        if state is not None and state.in_use == 0 and not state.waiters:
            del self._projects[project]
