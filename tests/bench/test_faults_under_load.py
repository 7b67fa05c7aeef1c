"""The counting and summary of `bench.faults_under_load` (the run itself is a benchmark, not a test)."""

from __future__ import annotations

import re

from bench.faults_under_load import count, longest_pause_after, number, number_pattern, table
from bench.smpp_sink import Counters

FIGURES = {
    "unanswered": 0,
    "retries": 3,
    "accepted_per_s": 250.0,
    "sending_resumed_after_s": 1.5,
    "restarted_after_s": 1.0,
    "held": 0,
    "load_average": 6.0,
}


def test_numbers_are_valid_mobile_numbers_in_a_block_per_scenario():
    assert number(2, 17) == "+4792000017"
    pattern = number_pattern(2).replace("\\\\", "\\")  # as ClickHouse reads the SQL string literal
    assert re.match(pattern, "+4792000017") and re.match(pattern, "4792000017")
    assert not re.match(pattern, number(3, 17))


def test_everything_delivered_and_billed_once_is_intact():
    accepted = {number(1, n): f"id-{n}" for n in range(3)}
    sink = {number(1, n).lstrip("+"): 1 for n in range(3)}  # the dispatcher sends without +
    counts = count("dispatcher", accepted, sink, {number(1, n): 1 for n in range(3)}, **FIGURES)
    assert (counts.answered_200, counts.message_ids, counts.at_sink, counts.billed) == (3, 3, 3, 3)
    assert (counts.lost, counts.sent_twice, counts.billed_twice, counts.not_billed) == (0, 0, 0, 0)
    assert counts.intact


def test_lost_sent_twice_and_billed_twice_are_counted_apart():
    accepted = {number(1, n): f"id-{n}" for n in range(4)}
    sink = {number(1, 0): 1, number(1, 1): 2, number(1, 2): 1}  # 3 never sent, 1 sent twice
    billed = {number(1, 0): 2, number(1, 1): 1, number(1, 2): 1}  # 0 billed twice, 3 not billed
    counts = count("ledger", accepted, sink, billed, **FIGURES)
    assert (counts.lost, counts.sent_twice, counts.billed_twice, counts.not_billed) == (1, 1, 1, 1)
    assert not counts.intact


def test_a_held_jobs_numbers_are_neither_lost_nor_unbilled_but_held():
    # id-1 and id-2 held for an operator: id-1 never sent, id-2 sent before the crash; neither billed.
    accepted = {number(1, n): f"id-{n}" for n in range(4)}
    sink = {number(1, 0): 1, number(1, 2): 1}
    billed = {number(1, 0): 1}
    counts = count("dispatcher", accepted, sink, billed, frozenset({"id-1", "id-2"}), **FIGURES)
    assert (counts.held_not_at_sink, counts.lost, counts.not_billed) == (1, 1, 1)  # id-3: lost and unbilled
    assert not counts.intact
    held_only = count("dispatcher", accepted, {**sink, number(1, 3): 1}, {**billed, number(1, 3): 1},
                      frozenset({"id-1", "id-2"}), **FIGURES)  # fmt: skip
    assert (held_only.held_not_at_sink, held_only.lost, held_only.not_billed) == (1, 0, 0)
    assert held_only.intact


def test_a_number_sent_without_a_200_is_not_lost_but_its_resend_counts():
    # The request was accepted but its answer was lost (the client gave up): sent, not counted as accepted.
    counts = count("rabbitmq", {}, {number(5, 9): 2}, {}, **FIGURES)
    assert (counts.answered_200, counts.lost, counts.sent_twice, counts.sent_without_200) == (0, 0, 1, 1)


def test_the_same_message_id_twice_shows_as_fewer_message_ids():
    counts = count("ingest-worker", {number(1, 0): "a", number(1, 1): "a"}, {}, {}, **FIGURES)
    assert (counts.answered_200, counts.message_ids) == (2, 1)


def test_longest_pause_counts_from_the_fault_to_the_end_of_the_load():
    assert longest_pause_after([1.0, 2.0, 6.0, 7.0], since=1.5, until=8.0) == 4.0
    assert longest_pause_after([], since=0.0, until=3.0) == 3.0


def test_the_table_has_a_row_per_scenario_and_a_dash_for_no_restart():
    rows = [count("rabbitmq", {number(5, 0): "x"}, {number(5, 0): 1}, {number(5, 0): 1}, **FIGURES)]
    rows[0].restarted_after_s = None
    lines = table(rows).splitlines()
    assert len(lines) == 3 and lines[2].startswith("| rabbitmq | 1 | 1 | 1 | 0 | 0 | 1 | 0 | 0 |")
    assert "| — |" in lines[2]


def test_the_sink_counts_submits_per_destination():
    counters = Counters()
    for destination in (b"4791000001", b"4791000002", b"4791000001"):
        counters.submitted(1.0, destination)
    assert dict(counters.destinations) == {b"4791000001": 2, b"4791000002": 1}
