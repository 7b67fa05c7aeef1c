"""`BodyDeadlines`: a read past its limit is cut (and only that read), within the resolution;
a cancellation from elsewhere is never mistaken for the deadline."""

from __future__ import annotations

import asyncio

import pytest
from litestar.types import HTTPReceiveMessage, HTTPRequestEvent, Receive

from services.ingest.body_deadlines import BodyDeadlines
from services.ingest.http_limits import read_body
from shared.errors import GatewayError


def _trickle(parts: list[bytes], gap: float) -> Receive:
    """An ASGI `receive` that gives `parts` `gap` seconds apart, then waits for ever."""
    queue = list(parts)

    async def receive() -> HTTPReceiveMessage:
        await asyncio.sleep(gap)
        if not queue:
            await asyncio.Event().wait()
        part = queue.pop(0)
        return HTTPRequestEvent(type="http.request", body=part, more_body=bool(queue))

    return receive


async def test_a_body_within_its_limit_is_read_whole() -> None:
    deadlines = BodyDeadlines(resolution=0.01)
    body = await read_body(_trickle([b'{"a":', b"1}"], 0.02), 1000, 1.0, deadlines)
    assert body == b'{"a":1}'
    assert not deadlines._deadlines and not deadlines._expired  # nothing left behind


async def test_a_slow_body_is_cut_with_408_within_the_resolution() -> None:
    deadlines = BodyDeadlines(resolution=0.05)
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(GatewayError) as raised:
        await read_body(_trickle([b"{"] * 100, 0.05), 1000, 0.2, deadlines)
    took = loop.time() - started
    assert raised.value.status == 408
    assert raised.value.message == "Request body not received within 0.2 seconds"
    assert 0.2 <= took < 0.2 + 0.05 + 0.1  # the limit, at most one resolution more (and slack)
    assert not asyncio.current_task().cancelling()  # type: ignore[union-attr]  # taken back
    # The check stops once no read is under way.
    await asyncio.sleep(0.12)
    assert not deadlines._timers


async def test_only_the_late_read_is_cut() -> None:
    deadlines = BodyDeadlines(resolution=0.02)
    slow = asyncio.create_task(read_body(_trickle([b"{"] * 100, 0.05), 1000, 0.1, deadlines))
    fast = asyncio.create_task(read_body(_trickle([b"{}"], 0.15), 1000, 5.0, deadlines))
    done = await asyncio.gather(slow, fast, return_exceptions=True)
    assert isinstance(done[0], GatewayError) and done[0].status == 408
    assert done[1] == b"{}"


async def test_a_cancellation_from_elsewhere_goes_on() -> None:
    deadlines = BodyDeadlines(resolution=0.01)
    reading = asyncio.create_task(read_body(_trickle([b"{"], 10.0), 1000, 5.0, deadlines))
    await asyncio.sleep(0.03)
    reading.cancel()
    with pytest.raises(asyncio.CancelledError):
        await reading
    assert not deadlines._deadlines


async def test_cancelled_from_elsewhere_as_the_deadline_passes_the_cancellation_wins() -> None:
    deadlines = BodyDeadlines(resolution=60.0)  # its own check never runs here: it is run by hand
    loop = asyncio.get_running_loop()
    reading = asyncio.create_task(read_body(_trickle([b"{"], 10.0), 1000, 0.0, deadlines))
    await asyncio.sleep(0.01)
    deadlines._timers[loop].cancel()
    deadlines._check(loop)  # the deadline cancels the read ...
    reading.cancel()  # ... and so does someone else, before the read runs again
    with pytest.raises(asyncio.CancelledError):
        await reading
    assert not deadlines._deadlines and not deadlines._expired
