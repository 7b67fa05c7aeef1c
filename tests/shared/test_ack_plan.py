"""The ledger's ack rule (`acks.py`): a multiple-ack never covers a delivery still unsettled."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from shared.ack_plan import AckFrame, ChannelTags, note_handed_back, plan_acks


def test_a_batch_of_every_delivery_so_far_is_one_multiple_ack_up_to_its_highest_tag():
    state = ChannelTags()
    assert plan_acks(state, [3, 1, 2]) == [AckFrame(3, multiple=True)]
    assert plan_acks(state, range(4, 501)) == [AckFrame(500, multiple=True)]
    assert state == ChannelTags(settled_upto=500)


def test_a_batch_past_an_unsettled_delivery_is_acked_one_by_one_until_the_gap_closes():
    state = ChannelTags()
    # Tag 2 is still being written: 1 goes with a multiple-ack, 3 and 4 on their own.
    assert plan_acks(state, [1, 3, 4]) == [AckFrame(1, True), AckFrame(3, False), AckFrame(4, False)]
    # 2 settles: the multiple-ack names 2 (never 4, acked already), the run reaches 4.
    assert plan_acks(state, [2, 5]) == [AckFrame(5, True)]
    assert state == ChannelTags(settled_upto=5)


def test_handed_back_deliveries_let_later_multiple_acks_pass_them():
    state = ChannelTags()
    note_handed_back(state, [1, 2])
    assert plan_acks(state, [3]) == [AckFrame(3, True)]
    note_handed_back(state, [5])
    assert plan_acks(state, [4, 6]) == [AckFrame(6, True)]
    assert state == ChannelTags(settled_upto=6)


@st.composite
def settlement_orders(draw: st.DrawFn) -> tuple[int, list[tuple[str, list[int]]]]:
    """Deliveries 1..n settled in steps: each step acks (a written batch) or hands back a
    random set of the still unsettled ones; some may never settle."""
    count = draw(st.integers(1, 60))
    unsettled = list(range(1, count + 1))
    steps: list[tuple[str, list[int]]] = []
    for _ in range(draw(st.integers(1, 12))):
        if not unsettled:
            break
        chosen = draw(st.lists(st.sampled_from(unsettled), min_size=1, unique=True))
        kind = draw(st.sampled_from(["ack", "ack", "ack", "hand_back"]))
        steps.append((kind, chosen))
        unsettled = [tag for tag in unsettled if tag not in chosen]
    return count, steps


@given(settlement_orders())
def test_a_multiple_ack_never_covers_an_unsettled_tag_and_every_ack_lands_once(order):
    count, steps = order
    state = ChannelTags()
    outstanding = set(range(1, count + 1))  # delivered, not yet acked or handed back
    acked_by_broker: list[int] = []
    meant_to_ack: set[int] = set()
    for kind, tags in steps:
        if kind == "hand_back":
            outstanding -= set(tags)  # the nack frames went out first
            note_handed_back(state, tags)
            continue
        meant_to_ack |= set(tags)
        for frame in plan_acks(state, tags):
            # The broker's rule: the named tag must be outstanding (else the channel closes).
            assert frame.tag in outstanding, f"{frame} names a tag that is not outstanding"
            covered = {t for t in outstanding if t <= frame.tag} if frame.multiple else {frame.tag}
            # The ledger's rule: only what this batch settles is acked.
            assert covered <= set(tags), f"{frame} covers {sorted(covered - set(tags))}, not settled"
            outstanding -= covered
            acked_by_broker.extend(covered)
    assert sorted(acked_by_broker) == sorted(meant_to_ack), "every written delivery acked exactly once"
