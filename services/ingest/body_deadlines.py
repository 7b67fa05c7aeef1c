"""The deadline of every request body a worker is reading, kept by one timer.

A keyed request has `body_timeout` seconds to deliver its body (`http_limits.py`). With a
timer of its own per request (`asyncio.timeout`), arming and disarming it cost about 3 %
of a single-recipient send's CPU (bench/README.md, ingest's CPU per request, round 4), for
a timer that almost never fires. Here a request reading its body is only noted with its
deadline, and one timer, running while any request is reading, cancels every request
past its deadline each `tick` seconds: a body that does not arrive is cut between
`seconds` and `seconds + tick` after it was started.

Every request gets the same time, so the deadlines are noted in the order they fall due
and a tick looks at the overdue ones only.
"""

from __future__ import annotations

import asyncio

DEFAULT_TICK_SECONDS = 0.1


class BodyDeadlines:
    def __init__(self, seconds: float, tick: float = DEFAULT_TICK_SECONDS) -> None:
        self.seconds = seconds
        self._tick = tick
        self._due: dict[asyncio.Task[object], float] = {}
        self._expired: set[asyncio.Task[object]] = set()
        self._timer: asyncio.TimerHandle | None = None

    def start(self) -> asyncio.Task[object]:
        """Note the current task's deadline; it must `stop` when its body is read (or not)."""
        task = asyncio.current_task()
        assert task is not None, "a body is read by a task"
        loop = asyncio.get_running_loop()
        self._due[task] = loop.time() + self.seconds
        if self._timer is None:
            self._timer = loop.call_later(self._tick, self._cut_overdue)
        return task

    def stop(self, task: asyncio.Task[object]) -> None:
        if self._due.pop(task, None) is None:
            self._expired.discard(task)

    def missed(self, task: asyncio.Task[object]) -> bool:
        """Whether the `CancelledError` `task` is handling is its deadline's (taken back
        then, so the task answers 408 instead of ending), or another's: let it through."""
        if task not in self._expired:
            return False
        self._expired.discard(task)
        # What asyncio.timeout does: no other cancellation of the task is pending.
        return task.uncancel() == 0

    def _cut_overdue(self) -> None:
        loop = asyncio.get_running_loop()
        now = loop.time()
        overdue = []
        for task, deadline in self._due.items():
            if deadline > now:
                break
            overdue.append(task)
        for task in overdue:
            del self._due[task]
            self._expired.add(task)
            task.cancel()
        self._timer = loop.call_later(self._tick, self._cut_overdue) if self._due else None
