"""Which `basic.ack` frames settle what a consumer finished: one multiple-ack where that is safe.

A channel numbers its deliveries 1, 2, 3...; `basic.ack(tag, multiple=True)` settles
every unsettled delivery up to `tag` at once. Both the dispatcher's acknowledger (jobs
finished in one flush) and the ledger's intake (a written batch, its four event queues on
one channel) settle that way. The rule that keeps it safe: a multiple-ack covers only
tags that are settled (these, or acked or handed back before), never one still in
flight. A tag past such a gap is acked on its own, at once, never held behind it.

Plain functions of the channel's state and the tags: `tests/shared/test_ack_plan.py`
checks the rule against every order of settling (hypothesis).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field


@dataclass
class ChannelTags:
    """What is settled on one channel."""

    settled_upto: int = 0
    """Every delivery tag up to this one is acked or handed back."""
    settled_above: set[int] = field(default_factory=set)
    """Tags above `settled_upto` that are acked or handed back."""


@dataclass(frozen=True, slots=True)
class AckFrame:
    tag: int
    multiple: bool


def plan_acks(state: ChannelTags, tags: Iterable[int]) -> list[AckFrame]:
    """The frames that ack `tags` (written, or dead-lettered: settled now), in the order
    to send them; `state` then counts them as settled.

    One multiple-ack up to the highest of `tags` that every tag below it is settled; each
    tag past a gap on its own. The multiple-ack's own tag is always one of `tags`: a
    `basic.ack` naming a tag already acked would close the channel.
    """
    new = set(tags)
    upto, highest_new = state.settled_upto, 0
    while True:
        tag = upto + 1
        if tag in new:
            new.discard(tag)
            highest_new = tag
        elif tag in state.settled_above:
            state.settled_above.discard(tag)
        else:
            break
        upto = tag
    state.settled_upto = upto
    frames = [AckFrame(highest_new, multiple=True)] if highest_new else []
    for tag in sorted(new):
        frames.append(AckFrame(tag, multiple=False))
        state.settled_above.add(tag)
    return frames


def note_handed_back(state: ChannelTags, tags: Iterable[int]) -> None:
    """`tags` were nacked back to their queue (the frames are sent already): settled,
    never to be acked, so later multiple-acks may reach past them."""
    state.settled_above.update(tags)
    while state.settled_upto + 1 in state.settled_above:
        state.settled_upto += 1
        state.settled_above.discard(state.settled_upto)
