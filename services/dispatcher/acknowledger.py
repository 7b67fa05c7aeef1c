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

The grouping is `shared.turn_batch.TurnBatch`'s, one flush at a time: a flush's frames
are planned and sent in order before the next flush is planned, so an individual ack
never reaches the broker after a multiple-ack that covers it, and the acks that finish
while frames are being written go together in the next flush. The frames themselves
(delivery tag, channel, multiple-ack) are `shared.rabbitmq`'s; which frames, the ledger's
rule too, is `shared.ack_plan`'s.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from shared import rabbitmq
from shared.ack_plan import ChannelTags, note_handed_back, plan_acks
from shared.rabbitmq import DeliveryChannel, RawDelivery
from shared.turn_batch import TurnBatch

_Frame = tuple[int, bool, list[int]]
"""A basic.ack to send: delivery tag, multiple, the jobs it settles (their places in the
flush)."""

_Delivery = tuple[DeliveryChannel, int]
"""A finished job: the channel it was delivered on, its delivery tag."""


@dataclass
class _ChannelAcks:
    tags: ChannelTags = field(default_factory=ChannelTags)
    """What is settled on the channel."""
    finished: dict[int, int] = field(default_factory=dict)
    """Tags whose job is done, waiting for this flush's ack: its place in the flush."""


class Acknowledger:
    def __init__(self) -> None:
        self._channels: dict[DeliveryChannel, _ChannelAcks] = {}
        self._acks: TurnBatch[_Delivery, Exception | None] = TurnBatch(self._send_acks, max_in_flight=1)

    async def ack(self, message: RawDelivery) -> None:
        """Returns once the ack is written to the socket (so a drain on SIGTERM keeps it)."""
        tag = message.delivery_tag
        if tag is None:
            await message.ack()
            return
        error = await self._acks.submit((message.channel, int(tag)))
        if error is not None:
            # Not swallowed: each job's handler gets it (the channel is gone, typically;
            # the broker redelivers what it did not get acked).
            raise error

    async def nack(self, message: RawDelivery) -> None:
        """Hands the job back to the queue (requeue), untouched."""
        await rabbitmq.hand_back(message)
        tag = message.delivery_tag
        if tag is not None:
            # Only now: the nack frame is queued ahead of any multiple-ack covering it.
            note_handed_back(self._state(message.channel).tags, [int(tag)])

    def _state(self, channel: DeliveryChannel) -> _ChannelAcks:
        state = self._channels.get(channel)
        if state is None:
            # A new channel (first start or after a reconnect): its tags start at 1.
            state = self._channels[channel] = _ChannelAcks()
        return state

    async def _send_acks(self, deliveries: list[_Delivery]) -> list[Exception | None]:
        """Plans each channel's frames, then sends them in order; answers, per delivery,
        the error its frame met (None: written)."""
        # A channel closed since (a reconnect) is forgotten; an ack on it still gets the
        # error its frame meets.
        for old in [c for c in self._channels if rabbitmq.channel_is_closed(c)]:
            del self._channels[old]
        planned: list[tuple[DeliveryChannel, list[_Frame]]] = []
        for place, (channel, tag) in enumerate(deliveries):
            self._state(channel).finished[tag] = place
        for channel, state in self._channels.items():
            if state.finished:
                planned.append((channel, self._plan(state)))
        errors: list[Exception | None] = [None] * len(deliveries)
        for channel, frames in planned:
            for tag, multiple, places in frames:
                try:
                    await rabbitmq.ack_on_channel(channel, tag, multiple=multiple)
                except Exception as exc:
                    for place in places:
                        errors[place] = exc
        return errors

    @staticmethod
    def _plan(state: _ChannelAcks) -> list[_Frame]:
        """The flush's frames on one channel (`shared.ack_plan`), each with the places of
        the jobs it settles: a multiple-ack every finished job it reaches, a frame past a
        gap (a job still in flight) its own."""
        finished = state.finished
        frames = plan_acks(state.tags, finished)
        alone = {frame.tag for frame in frames if not frame.multiple}
        covered = [place for tag, place in finished.items() if tag not in alone]
        planned: list[_Frame] = [
            (frame.tag, frame.multiple, covered if frame.multiple else [finished[frame.tag]]) for frame in frames
        ]
        finished.clear()
        return planned
