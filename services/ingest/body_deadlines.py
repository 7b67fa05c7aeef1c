"""The time limit on reading a send's body, kept for every request by one timer.

`asyncio.timeout` around each body read schedules a timer and cancels it again for every
request: 5.1 µs a request under uvloop, about 2 % of ingest's CPU per single-recipient send
(bench/README.md, round 8), for a limit measured in seconds that almost no request comes
near. Here a request only
notes its deadline; one check every `resolution` seconds cancels the reads that are past
theirs, so a body gets at most `resolution` longer than its limit. A read cut that way
ends as `asyncio.timeout` ends one: the reader takes the cancellation back (`timed_out`)
and answers 408, unless the task was also cancelled for another reason (then that
cancellation goes on).
"""

from __future__ import annotations

import asyncio

RESOLUTION_SECONDS = 0.25


class BodyDeadlines:
    __slots__ = ("_deadlines", "_expired", "_resolution", "_timers")

    def __init__(self, resolution: float = RESOLUTION_SECONDS) -> None:
        self._resolution = resolution
        self._deadlines: dict[asyncio.Task[object], float] = {}
        """The reads under way: each task's deadline (its loop's clock)."""
        self._expired: set[asyncio.Task[object]] = set()
        """Tasks cancelled here whose read has not ended yet."""
        self._timers: dict[asyncio.AbstractEventLoop, asyncio.TimerHandle] = {}
        """The check each loop with reads under way has scheduled (a worker has one loop;
        tests may run one app in several)."""

    def start(self, limit: float) -> tuple[asyncio.Task[object], int]:
        """The current task's read begins: it must end within `limit` seconds. Answers what
        `finish` takes."""
        task = asyncio.current_task()
        assert task is not None, "a body is read by a task"
        loop = task.get_loop()
        self._deadlines[task] = loop.time() + limit
        if loop not in self._timers:
            self._timers[loop] = loop.call_later(self._resolution, self._check, loop)
        return task, task.cancelling()

    def finish(self, started: tuple[asyncio.Task[object], int]) -> None:
        """The read ended, however it did."""
        task, _ = started
        self._deadlines.pop(task, None)
        self._expired.discard(task)

    def timed_out(self, started: tuple[asyncio.Task[object], int]) -> bool:
        """Whether the `CancelledError` that ended the read is this read's deadline (taken
        back: answer 408), not a cancellation from elsewhere (let it go on). The reader
        still calls `finish`."""
        task, cancelling = started
        return task in self._expired and task.uncancel() <= cancelling

    def _check(self, loop: asyncio.AbstractEventLoop) -> None:
        del self._timers[loop]
        now = loop.time()
        late = [t for t, deadline in self._deadlines.items() if deadline <= now and t.get_loop() is loop]
        for task in late:
            del self._deadlines[task]
            self._expired.add(task)
            task.cancel()
        if any(task.get_loop() is loop for task in self._deadlines):
            self._timers[loop] = loop.call_later(self._resolution, self._check, loop)
