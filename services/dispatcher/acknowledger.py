"""Acknowledges finished jobs with as few AMQP frames as is safe.

With a thousand small jobs a second, one `basic.ack` frame per job (each its own socket
write) was a noticeable share of the dispatcher's CPU. Jobs that finish in the same
event-loop turn are acknowledged together: one `basic.ack` with `multiple=True` up to the
highest finished tag, but only when every delivery tag up to it is settled on that
channel, so a multiple-ack never covers a job still in flight or one handed back. A
finished job past such a gap is acked on its own at once, never held behind a slow job.

Safe because a channel numbers its deliveries 1, 2, 3... and every delivery on the
consuming channel comes through here: acked once its outcome events are confirmed
(`ack`), or handed back (`nack`). A delivery that is neither (a handler bug) only stops
the multiple-acks past it; the individual acks go on.
"""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass, field

from aiormq.abc import AbstractChannel
from faststream.rabbit.message import RabbitMessage

_Frame = tuple[int, bool, list["asyncio.Future[None]"]]
"""A basic.ack to send: delivery tag, multiple, the jobs it settles."""


@dataclass
class _ChannelAcks:
    settled_upto: int = 0
    """Every delivery tag up to this one is acked or handed back."""
    settled: set[int] = field(default_factory=set)
    """Tags above `settled_upto` that are acked or handed back."""
    finished: dict[int, asyncio.Future[None]] = field(default_factory=dict)
    """Tags whose job is done, waiting for this turn's ack."""
    outgoing: deque[_Frame] = field(default_factory=deque)
    """Planned frames, sent strictly in order by one task: an individual ack must never
    reach the broker after a multiple-ack that covers it."""
    sender: asyncio.Task[None] | None = None


class Acknowledger:
    def __init__(self) -> None:
        self._channels: dict[AbstractChannel, _ChannelAcks] = {}
        self._flush_scheduled = False

    async def ack(self, message: RabbitMessage) -> None:
        """Returns once the ack is written to the socket (so a drain on SIGTERM keeps it)."""
        raw = message.raw_message
        if raw.delivery_tag is None:
            await message.ack()
            return
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        self._state(raw.channel).finished[raw.delivery_tag] = future
        if not self._flush_scheduled:
            self._flush_scheduled = True
            loop.call_soon(self._flush)
        await future

    async def nack(self, message: RabbitMessage) -> None:
        """Hands the job back to the queue (requeue), untouched."""
        await message.nack(requeue=True)
        raw = message.raw_message
        if raw.delivery_tag is not None:
            # Only now: the nack frame is queued ahead of any multiple-ack covering it.
            self._state(raw.channel).settled.add(raw.delivery_tag)

    def _state(self, channel: AbstractChannel) -> _ChannelAcks:
        state = self._channels.get(channel)
        if state is None:
            # A new channel (first start or after a reconnect): its tags start at 1.
            for old in [c for c in self._channels if c.is_closed]:
                del self._channels[old]
            state = self._channels[channel] = _ChannelAcks()
        return state

    def _flush(self) -> None:
        self._flush_scheduled = False
        for channel, state in self._channels.items():
            if not state.finished:
                continue
            state.outgoing.extend(self._plan(state))
            if state.sender is None:
                state.sender = asyncio.get_running_loop().create_task(self._send(channel, state))

    @staticmethod
    def _plan(state: _ChannelAcks) -> list[_Frame]:
        finished, settled = state.finished, state.settled
        upto, last_finished = state.settled_upto, 0
        covered: list[asyncio.Future[None]] = []
        while True:
            tag = upto + 1
            if tag in finished:
                covered.append(finished.pop(tag))
                last_finished = tag
            elif tag in settled:
                settled.discard(tag)
            else:
                break
            upto = tag
        state.settled_upto = upto
        frames: list[_Frame] = [(last_finished, True, covered)] if covered else []
        # Past a gap (a job still in flight): each on its own, now.
        for tag, future in finished.items():
            frames.append((tag, False, [future]))
            settled.add(tag)
        finished.clear()
        return frames

    @staticmethod
    async def _send(channel: AbstractChannel, state: _ChannelAcks) -> None:
        outgoing = state.outgoing
        try:
            while outgoing:
                tag, multiple, futures = outgoing.popleft()
                try:
                    await channel.basic_ack(tag, multiple=multiple)
                except Exception as exc:
                    # Not swallowed: each job's handler gets it (the channel is gone,
                    # typically; the broker redelivers what it did not get acked).
                    for future in futures:
                        if not future.done():
                            future.set_exception(exc)
                else:
                    for future in futures:
                        if not future.done():
                            future.set_result(None)
        finally:
            state.sender = None
