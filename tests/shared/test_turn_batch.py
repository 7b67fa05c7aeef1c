"""`shared.turn_batch.TurnBatch`: the calls made in one event-loop turn, flushed together."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.turn_batch import TurnBatch, regroup


def chunks(sizes: Sequence[int], max_size: int | None) -> list[list[int]]:
    """The rule a turn's items are cut by: in order, a new flush when the next item would
    overflow this one; an item bigger than `max_size` alone."""
    out: list[list[int]] = []
    size = 0
    for item in sizes:
        if out and (max_size is None or size + item <= max_size):
            out[-1].append(item)
            size += item
        else:
            out.append([item])
            size = item
    return out


@dataclass
class Recorder:
    """A flush function that records what it was given and answers each item doubled."""

    flushes: list[list[int]] = field(default_factory=list)
    turns_each: int = 0
    in_flight: int = 0
    most_in_flight: int = 0
    fail_flush: int | None = None

    async def flush(self, items: list[int]) -> list[int]:
        index = len(self.flushes)
        self.flushes.append(items)
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            for _ in range(self.turns_each):
                await asyncio.sleep(0)
            if index == self.fail_flush:
                raise ValueError(f"flush {index} failed")
            return [item * 2 for item in items]
        finally:
            self.in_flight -= 1


def test_a_lone_caller_gets_its_own_result() -> None:
    async def scenario() -> None:
        recorder = Recorder()
        batch: TurnBatch[int, int] = TurnBatch(recorder.flush)
        assert await batch.submit(21) == 42
        assert recorder.flushes == [[21]]

    asyncio.run(scenario())


# Each inner list: the item sizes handed in during one loop turn (item = its size, and
# unique enough for an order check once combined with its position).
turns_strategy = st.lists(st.lists(st.integers(1, 9), min_size=1, max_size=12), min_size=1, max_size=6)


@given(turns=turns_strategy, max_size=st.one_of(st.none(), st.integers(1, 20)))
@settings(max_examples=150, deadline=None)
def test_the_items_of_one_turn_go_in_one_flush_cut_only_by_max_size(turns, max_size) -> None:
    async def scenario() -> None:
        recorder = Recorder()
        batch: TurnBatch[int, int] = TurnBatch(recorder.flush, max_size=max_size, size_of=lambda item: item)
        waiting: list[tuple[int, asyncio.Future[int]]] = []
        for turn in turns:
            waiting.extend((item, batch.put(item)) for item in turn)
            await asyncio.sleep(0)  # the next loop turn: this turn's flushes start
        for item, future in waiting:
            assert await future == item * 2  # every caller its own result
        expected = [flush for turn in turns for flush in chunks(turn, max_size)]
        assert recorder.flushes == expected

    asyncio.run(scenario())


@given(
    turns=turns_strategy,
    max_size=st.one_of(st.none(), st.integers(1, 20)),
    max_in_flight=st.integers(1, 3),
    max_partial=st.one_of(st.none(), st.integers(1, 2)),
    turns_each=st.integers(0, 4),
)
@settings(max_examples=150, deadline=None)
def test_bounded_flushes_keep_order_and_never_lose_or_repeat_an_item(
    turns, max_size, max_in_flight, max_partial, turns_each
) -> None:
    async def scenario() -> None:
        recorder = Recorder(turns_each=turns_each)
        batch: TurnBatch[tuple[int, int], tuple[int, int]] = TurnBatch(
            flush_pairs(recorder),
            max_size=max_size,
            size_of=lambda pair: pair[1],
            max_in_flight=max_in_flight,
            max_partial_in_flight=max_partial,
        )
        submitted: list[tuple[int, int]] = []
        waiting = []
        for turn in turns:
            for size in turn:
                pair = (len(submitted), size)
                submitted.append(pair)
                waiting.append((pair, batch.put(pair)))
            await asyncio.sleep(0)
        for pair, future in waiting:
            assert await future == (pair[0], pair[1] * 2)
        await batch.close()
        taken = [pair for flush in recorder.flushes for pair in flush]
        assert taken == submitted  # each once, first in first out
        assert recorder.most_in_flight <= max_in_flight
        if max_size is not None:
            for flush in recorder.flushes:
                assert len(flush) == 1 or sum(size for _, size in flush) <= max_size

    asyncio.run(scenario())


def flush_pairs(recorder: Recorder):
    async def flush(pairs: list[tuple[int, int]]) -> list[tuple[int, int]]:
        recorder.flushes.append(pairs)
        recorder.in_flight += 1
        recorder.most_in_flight = max(recorder.most_in_flight, recorder.in_flight)
        try:
            for _ in range(recorder.turns_each):
                await asyncio.sleep(0)
            return [(index, size * 2) for index, size in pairs]
        finally:
            recorder.in_flight -= 1

    return flush


@given(sizes=st.lists(st.integers(1, 5), min_size=2, max_size=30), max_size=st.integers(1, 10), data=st.data())
@settings(max_examples=100, deadline=None)
def test_an_error_reaches_every_waiter_of_its_flush_and_no_other(sizes, max_size, data) -> None:
    expected = chunks(sizes, max_size)
    failing = data.draw(st.integers(0, len(expected) - 1))

    async def scenario() -> None:
        recorder = Recorder(fail_flush=failing)
        batch: TurnBatch[int, int] = TurnBatch(recorder.flush, max_size=max_size, size_of=lambda item: item)
        futures = [batch.put(size) for size in sizes]
        outcomes = await asyncio.gather(*futures, return_exceptions=True)
        position = 0
        for index, flush in enumerate(expected):
            for item in flush:
                outcome = outcomes[position]
                if index == failing:
                    assert isinstance(outcome, ValueError) and str(outcome) == f"flush {failing} failed"
                else:
                    assert outcome == item * 2
                position += 1

    asyncio.run(scenario())


def test_a_cancelled_caller_item_is_still_flushed_and_the_others_get_theirs() -> None:
    async def scenario() -> None:
        recorder = Recorder(turns_each=2)
        batch: TurnBatch[int, int] = TurnBatch(recorder.flush, max_in_flight=1)
        first = asyncio.ensure_future(batch.submit(1))
        await asyncio.sleep(0)
        await asyncio.sleep(0)  # the first flush runs now; these two wait for it
        cancelled = asyncio.ensure_future(batch.submit(2))
        kept = asyncio.ensure_future(batch.submit(3))
        await asyncio.sleep(0)
        cancelled.cancel()
        assert await first == 2
        assert await kept == 6
        assert cancelled.cancelled()
        await batch.close()
        assert recorder.flushes == [[1], [2, 3]]  # 2 was released all the same

    asyncio.run(scenario())


def test_one_flush_at_a_time_groups_what_arrives_while_one_runs() -> None:
    async def scenario() -> None:
        recorder = Recorder(turns_each=3)
        batch: TurnBatch[int, int] = TurnBatch(recorder.flush, max_in_flight=1)
        results = []
        first = batch.put(1)
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        # The first flush is running: these arrive over three turns and go together next.
        for item in (2, 3, 4):
            results.append(batch.put(item))
            await asyncio.sleep(0)
        assert await first == 2
        assert [await r for r in results] == [4, 6, 8]
        assert recorder.flushes == [[1], [2, 3, 4]]
        assert recorder.most_in_flight == 1

    asyncio.run(scenario())


def test_a_partial_flush_waits_while_the_partial_slots_are_taken_but_a_full_one_goes() -> None:
    async def scenario() -> None:
        gate = asyncio.Event()
        started: list[list[int]] = []

        async def flush(items: list[int]) -> list[int]:
            started.append(items)
            await gate.wait()
            return items

        batch: TurnBatch[int, int] = TurnBatch(
            flush, max_size=10, size_of=lambda item: item, max_in_flight=4, max_partial_in_flight=1
        )
        waiting = [batch.put(3)]  # partial: goes, takes the one partial slot
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        waiting.append(batch.put(2))  # partial: waits
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        assert started == [[3]]
        waiting.append(batch.put(8))  # with the waiting 2, a full flush (10): goes at once
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        assert started == [[3], [2, 8]]
        gate.set()
        assert [await w for w in waiting] == [3, 2, 8]

    asyncio.run(scenario())


def test_a_flush_answering_the_wrong_number_of_results_fails_every_waiter() -> None:
    async def scenario() -> None:
        async def flush(items: list[int]) -> list[int]:
            return items[:-1]

        batch: TurnBatch[int, int] = TurnBatch(flush)
        outcomes = await asyncio.gather(batch.put(1), batch.put(2), return_exceptions=True)
        assert all(isinstance(o, RuntimeError) and "1 results for 2 items" in str(o) for o in outcomes)

    asyncio.run(scenario())


def test_limits_below_one_are_refused() -> None:
    async def flush(items: list[int]) -> list[int]:
        return items

    with pytest.raises(ValueError, match="max_size"):
        TurnBatch(flush, max_size=0)
    with pytest.raises(ValueError, match="max_in_flight"):
        TurnBatch(flush, max_in_flight=0)
    with pytest.raises(ValueError, match="max_partial_in_flight"):
        TurnBatch(flush, max_size=5, max_partial_in_flight=0)


def test_regroup_gives_each_item_its_own_answers_in_order() -> None:
    assert regroup([1, 2, 3, 4], [("a",), ("b", "c"), (), ("d",)]) == [[1], [2, 3], [], [4]]
