"""Group the calls made in one event-loop turn into one flush: many callers, one round trip.

With a thousand small jobs a second, one Redis round trip or one AMQP frame per job costs
more than the work it carries. So a caller hands its item to a `TurnBatch` and waits for
its own result; every item handed in during one event-loop turn goes to the flush function
together at the next turn (one `call_soon`). A lone caller waits one loop turn, nothing
more; callers woken together (a burst of deliveries, a provider answer for many jobs)
share one flush.

    batch = TurnBatch(write_all)          # async def write_all(items) -> one result each
    result = await batch.submit(item)

Options:

- `max_size` (with `size_of`, default 1 per item): a flush carries at most this much; the
  items are cut, in order, into as many flushes as needed. An item bigger than `max_size`
  goes alone (never refused).
- `max_in_flight`: at most this many flushes run at once. Items handed in meanwhile wait,
  and go together when one returns (group commit: the slower the engine, the bigger the
  flushes). `1` runs the flushes strictly one after the other.
- `max_partial_in_flight`: a flush that is not full (all that waited fits in less than
  `max_size`) starts only while fewer than this many partial flushes run, so under load
  small flushes wait for company instead of taking every slot. A full one starts at once
  on any free slot.

Guarantees, which the callers rely on:

- every item handed in is flushed exactly once, even if its caller is cancelled
  meanwhile (a release, an ack: the work must still happen); a cancelled caller only
  does not get its result;
- order: items are taken first in, first out, so an item never goes in an earlier
  flush than one handed in before it, and the flushes start in that order; with
  `max_in_flight=1` a flush starts only after the previous one returned, so their
  effects on the engine are in submission order too;
- the flush answers one result per item, in the items' order; if it raises, every
  waiter of that flush gets the exception (the waiters of other flushes do not). A
  flush that wants each item to fail on its own returns the exception as the item's
  result, and its caller raises it;
- `close()` waits for the flushes in flight.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")


def regroup(answers: Sequence[Result], items: Sequence[Sequence[object]]) -> list[list[Result]]:
    """`answers` (one per op, the ops of `items` flattened in order) as one list per item:
    for a `TurnBatch` whose items each carry several ops (a caller's whole share)."""
    grouped: list[list[Result]] = []
    at = 0
    for item in items:
        grouped.append(list(answers[at : at + len(item)]))
        at += len(item)
    return grouped


def _one(item: object) -> int:
    return 1


class TurnBatch(Generic[Item, Result]):
    def __init__(
        self,
        flush: Callable[[list[Item]], Awaitable[Sequence[Result]]],
        *,
        max_size: int | None = None,
        size_of: Callable[[Item], int] = _one,
        max_in_flight: int | None = None,
        max_partial_in_flight: int | None = None,
    ) -> None:
        if max_size is not None and max_size < 1:
            raise ValueError("max_size must be at least 1")
        if max_in_flight is not None and max_in_flight < 1:
            raise ValueError("max_in_flight must be at least 1")
        if max_partial_in_flight is not None and max_partial_in_flight < 1:
            raise ValueError("max_partial_in_flight must be at least 1")  # or partial ones never go
        self._flush = flush
        self._max_size = max_size
        self._size_of = size_of
        self._max_in_flight = max_in_flight
        self._max_partial = max_partial_in_flight
        self._pending: deque[tuple[Item, asyncio.Future[Result]]] = deque()
        self._scheduled = False
        self._in_flight = 0
        self._partial_in_flight = 0
        self._flushes: set[asyncio.Task[None]] = set()

    async def submit(self, item: Item) -> Result:
        """Hands `item` in and returns its own result once its flush has returned."""
        return await self.put(item)

    def put(self, item: Item) -> asyncio.Future[Result]:
        """`submit` without waiting: the item is in this turn's batch once this returns
        (so several items can be handed in at once and gathered)."""
        future: asyncio.Future[Result] = asyncio.get_running_loop().create_future()
        self._pending.append((item, future))
        self._schedule()
        return future

    async def close(self) -> None:
        """Waits for the flushes in flight (their errors went to their callers)."""
        if self._flushes:
            await asyncio.gather(*self._flushes, return_exceptions=True)

    def _has_slot(self) -> bool:
        return self._max_in_flight is None or self._in_flight < self._max_in_flight

    def _schedule(self) -> None:
        # Next loop turn: every caller woken in this one has handed its item in by then.
        if not self._scheduled and self._pending and self._has_slot():
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self._start_flushes)

    def _start_flushes(self) -> None:
        self._scheduled = False
        pending = self._pending
        while pending and self._has_slot():
            count, size = self._next_flush_size()
            partial = self._max_size is not None and count == len(pending) and size < self._max_size
            if partial and self._max_partial is not None and self._partial_in_flight >= self._max_partial:
                return  # a flush in flight returns later; more will have piled up by then
            group = [pending.popleft() for _ in range(count)]
            self._in_flight += 1
            self._partial_in_flight += partial
            task = asyncio.get_running_loop().create_task(self._run(group, partial))
            self._flushes.add(task)
            task.add_done_callback(self._flushes.discard)

    def _next_flush_size(self) -> tuple[int, int]:
        """How many of the waiting items the next flush takes, and their size."""
        if self._max_size is None:
            return len(self._pending), 0
        count, size = 0, 0
        for item, _ in self._pending:
            item_size = self._size_of(item)
            if count and size + item_size > self._max_size:
                break
            size += item_size
            count += 1
        return count, size

    async def _run(self, group: list[tuple[Item, asyncio.Future[Result]]], partial: bool) -> None:
        try:
            results = await self._flush([item for item, _ in group])
            if len(results) != len(group):
                raise RuntimeError(f"flush answered {len(results)} results for {len(group)} items")
        except asyncio.CancelledError:
            for _, future in group:
                future.cancel()
            raise
        except Exception as exc:
            # Not swallowed: every caller in this flush gets it and decides what it means.
            for _, future in group:
                if not future.done():
                    future.set_exception(exc)
        else:
            for (_, future), result in zip(group, results, strict=True):
                if not future.done():
                    future.set_result(result)
        finally:
            self._in_flight -= 1
            self._partial_in_flight -= partial
            self._schedule()
