"""Request bodies' deadlines, kept by one timer per worker (`body_deadlines.py`), as
`read_body` uses them: no I/O, an ASGI `receive` of the test's own."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from services.ingest.body_deadlines import BodyDeadlines
from services.ingest.http_limits import read_body
from shared.errors import GatewayError

TICK = 0.05


def body_in(*chunks: bytes, pause: float = 0.0) -> Any:
    """A `receive` that delivers `chunks`, `pause` seconds before each."""
    messages = iter(chunks)

    async def receive() -> dict[str, Any]:
        await asyncio.sleep(pause)
        chunk = next(messages)
        return {"type": "http.request", "body": chunk, "more_body": chunk != chunks[-1]}

    return receive


async def never() -> dict[str, Any]:
    await asyncio.Event().wait()
    raise AssertionError("unreachable")


async def test_a_body_in_time_is_read_and_the_timer_stops_when_no_body_is_awaited() -> None:
    deadlines = BodyDeadlines(0.5, tick=TICK)
    assert await read_body(body_in(b"ab", b"c", pause=0.01), 100, deadlines) == b"abc"
    await asyncio.sleep(2 * TICK)
    assert deadlines._timer is None and not deadlines._due and not deadlines._expired


async def test_a_body_that_never_arrives_is_cut_within_a_tick_of_its_deadline() -> None:
    deadlines = BodyDeadlines(0.3, tick=TICK)
    started = time.monotonic()
    with pytest.raises(GatewayError) as refused:
        await read_body(never, 100, deadlines)
    waited = time.monotonic() - started
    assert refused.value.http_status == 408
    assert refused.value.message == "Request body not received within 0.3 seconds"
    assert 0.3 <= waited < 0.3 + TICK + 0.1
    current = asyncio.current_task()
    assert current is not None and current.cancelling() == 0  # the deadline's cancellation was taken back


async def test_only_the_overdue_bodies_are_cut() -> None:
    deadlines = BodyDeadlines(0.3, tick=TICK)

    async def late() -> bytes:
        return await read_body(never, 100, deadlines)

    first = asyncio.create_task(late())
    await asyncio.sleep(0.2)
    second = asyncio.create_task(read_body(body_in(b"x", pause=0.25), 100, deadlines))  # due at 0.5 s, done at 0.45 s
    with pytest.raises(GatewayError):
        await first
    assert await second == b"x"


async def test_a_cancellation_of_the_request_is_no_timeout() -> None:
    deadlines = BodyDeadlines(10, tick=TICK)
    reading = asyncio.create_task(read_body(never, 100, deadlines))
    await asyncio.sleep(TICK)
    reading.cancel()
    with pytest.raises(asyncio.CancelledError):
        await reading
    assert not deadlines._due and not deadlines._expired


async def test_a_request_cancelled_as_its_deadline_passes_stays_cancelled() -> None:
    deadlines = BodyDeadlines(0, tick=10)
    reading = asyncio.create_task(read_body(never, 100, deadlines))
    await asyncio.sleep(0)  # reading its body now
    deadlines._cut_overdue()  # its deadline's cancellation, and in the same turn the server's
    reading.cancel()
    with pytest.raises(asyncio.CancelledError):
        await reading
    assert not deadlines._due and not deadlines._expired
