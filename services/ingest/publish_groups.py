"""Group commit: accepted jobs that reach the publisher close together share one broker
message and one publisher confirm.

A quorum-queue enqueue and its confirm cost the broker (and the publisher) about the same
for one job as for fifty, so under load one message per job spends most of the pipeline's
CPU on envelopes. The rule:

- a job joins the open group; the group leaves as soon as it holds `max_jobs` jobs or
  `max_bytes` of job bodies;
- otherwise it leaves at the next event-loop turn when no publish is waiting for its
  confirm (an idle gateway adds no wait: requests that arrived in the same turn share a
  message, a lone request goes alone), or after `max_wait_seconds` while one is (under
  load, the wait gathers the requests of the next millisecond or two, while the broker is
  busy confirming the previous group anyway);
- but while `max_in_flight` publishes are waiting for their confirms, the open group
  waits for one of them to be confirmed, however long that takes, and leaves then (or
  when it is full). Under load a group is then what arrived during one confirm: the
  slower the broker, the bigger the groups, so the broker, the dispatcher and the ledger
  pay their per-message work for ever more jobs at once just when the machine is busiest,
  where a fixed wait sends a new message every `max_wait_seconds` whatever the broker's
  pace. A request waits at most for the confirm under way, then its own.

Every caller waits for the confirm of the message its job is in, and a nack, a timeout or
a broker error fails every job of that message: nothing of it was queued, so each caller
answers the contract's error and undoes its request exactly as for a failed publish of
one job. A caller that gives up before its group left (its task cancelled) is left out
of the group: its job is never published.

`GroupCommitter` holds the open group; the body of a group is `group_body`'s. Both are
free of I/O: the publish itself is the function given to the committer.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

SINGLE_JOB_TYPE = "SmsJob/1"
BATCH_TYPE = "SmsJobBatch/1"

_BATCH_OPEN = b'{"schema_version":1,"jobs":['
_BATCH_CLOSE = b"]}"


@dataclass(frozen=True, slots=True)
class GroupLimits:
    max_jobs: int = 64
    max_bytes: int = 1_048_576
    max_wait_seconds: float = 0.002
    max_in_flight: int | None = 1
    """Publishes awaiting their confirm at most, but for full groups (None: no limit)."""


@dataclass(frozen=True, slots=True)
class GroupMessage:
    body: bytes
    message_type: str
    message_id: str
    jobs: int = 1


def group_body(job_bodies: Sequence[bytes], message_ids: Sequence[str]) -> GroupMessage:
    """The broker message of a group: a plain `SmsJob` for one job (what every consumer has
    always read, with the job's id as message id), an `SmsJobBatch` for more (its id names
    its first job). The jobs' JSON is spliced in as it is, so each job is encoded once, at
    submit."""
    if not job_bodies or len(job_bodies) != len(message_ids):
        raise ValueError("a group has at least one job, and an id for each")
    if len(job_bodies) == 1:
        return GroupMessage(job_bodies[0], SINGLE_JOB_TYPE, message_ids[0])
    body = _BATCH_OPEN + b",".join(job_bodies) + _BATCH_CLOSE
    return GroupMessage(body, BATCH_TYPE, f"batch-{message_ids[0]}", len(job_bodies))


def is_full(jobs: int, size_bytes: int, limits: GroupLimits) -> bool:
    return jobs >= limits.max_jobs or size_bytes >= limits.max_bytes


def flush_delay(publishes_waiting: int, limits: GroupLimits) -> float | None:
    """How long a newly opened group waits for more jobs: no longer than the event-loop
    turn (0) while no publish is waiting for its confirm, `max_wait_seconds` while one is,
    until a confirm (None) while `max_in_flight` are."""
    if limits.max_in_flight is not None and publishes_waiting >= limits.max_in_flight:
        return None
    return limits.max_wait_seconds if publishes_waiting else 0.0


Publish = Callable[[GroupMessage], Awaitable[None]]
"""Publishes one message; returns once the broker confirmed it, raises otherwise."""


@dataclass(slots=True)
class _Group:
    bodies: list[bytes] = field(default_factory=list)
    ids: list[str] = field(default_factory=list)
    waiters: list[asyncio.Future[None]] = field(default_factory=list)
    size_bytes: int = 0


class GroupCommitter:
    def __init__(self, publish: Publish, limits: GroupLimits) -> None:
        self._publish = publish
        self._limits = limits
        self._open: _Group | None = None
        self._timer: asyncio.TimerHandle | asyncio.Handle | None = None
        self._waiting = 0  # publishes sent and not yet confirmed
        self._tasks: set[asyncio.Task[None]] = set()

    async def submit(self, job_body: bytes, message_id: str) -> None:
        """Returns once the message holding `job_body` is confirmed; raises what its
        publish raised."""
        loop = asyncio.get_running_loop()
        group = self._open
        if group is None:
            group = self._open = _Group()
            delay = flush_delay(self._waiting, self._limits)
            if delay is not None:  # else the next confirm sends it (`_send`)
                self._timer = loop.call_soon(self._flush) if delay <= 0 else loop.call_later(delay, self._flush)
        waiter: asyncio.Future[None] = loop.create_future()
        group.bodies.append(job_body)
        group.ids.append(message_id)
        group.waiters.append(waiter)
        group.size_bytes += len(job_body)
        if is_full(len(group.bodies), group.size_bytes, self._limits):
            self._flush()
        await waiter

    def _flush(self) -> None:
        group, self._open = self._open, None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if group is None:
            return
        # A caller cancelled before its group left is not published (nobody would answer it).
        kept = [(b, i, w) for b, i, w in zip(group.bodies, group.ids, group.waiters, strict=True) if not w.done()]
        if not kept:
            return
        self._waiting += 1  # counted from now: a job submitted next turn waits for more company
        task = asyncio.get_running_loop().create_task(
            self._send(group_body([b for b, _, _ in kept], [i for _, i, _ in kept]), [w for _, _, w in kept])
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _send(self, message: GroupMessage, waiters: list[asyncio.Future[None]]) -> None:
        try:
            await self._publish(message)
        except asyncio.CancelledError:
            for waiter in waiters:
                waiter.cancel()
            raise
        except Exception as exc:  # every caller of the group gets the failure
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_exception(exc)
            return
        finally:
            self._waiting -= 1
            if self._open is not None and self._timer is None:
                # The open group was waiting for this confirm (or for any, while the
                # broker fails): it leaves now, with the next turn's arrivals.
                self._timer = asyncio.get_running_loop().call_soon(self._flush)
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    async def close(self) -> None:
        """Sends the open group and waits for every publish under way (at shutdown)."""
        self._flush()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
