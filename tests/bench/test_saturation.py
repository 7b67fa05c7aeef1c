"""The pure parts of `bench.saturation`: percentiles, the RSS slope and its verdict, the
per-service rows and tables, the delivery check, and the sink's count of distinct numbers.
No timings: the benchmark itself measures those."""

from __future__ import annotations

import math

import pytest
import smpp34
from hypothesis import given
from hypothesis import strategies as st

from bench import smpp_sink
from bench.ingest_loadgen import Latency, percentile
from bench.peers import listening_sockets
from bench.saturation import without_nan
from bench.saturation_figures import (
    BOUNDED,
    DRAIN,
    GROWING,
    LOAD,
    MB,
    TOO_SHORT,
    Delivery,
    Sample,
    accepted_from_metrics,
    delivery_line,
    generator_behind,
    key_families_line,
    key_family,
    latency_table,
    memory_table,
    parse_queue_list,
    slope_per_minute,
    summarise_memory,
    verdict,
)

# --- percentiles ---------------------------------------------------------------------------


def test_percentiles_are_nearest_rank():
    assert percentile([1.0, 2.0, 3.0, 4.0, 5.0], 50) == 3.0  # the median of five is the third
    hundred = [float(n) for n in range(1, 101)]
    assert (percentile(hundred, 50), percentile(hundred, 90), percentile(hundred, 99)) == (50.0, 90.0, 99.0)
    assert percentile(hundred, 100) == 100.0
    assert percentile([7.0], 99) == 7.0
    assert math.isnan(percentile([], 99))


@given(st.lists(st.floats(0, 1e6, allow_nan=False), min_size=1, max_size=300), st.sampled_from([50, 90, 99, 99.9]))
def test_a_percentile_is_the_smallest_value_with_that_share_at_or_below_it(values, pct):
    ordered = sorted(values)
    value = percentile(ordered, pct)
    at_or_below = sum(1 for v in ordered if v <= value)
    below = sum(1 for v in ordered if v < value)
    assert at_or_below * 100 >= pct * len(ordered)
    assert below * 100 < pct * len(ordered)


# --- slope and verdict ---------------------------------------------------------------------


def test_the_slope_is_in_mb_a_minute_and_needs_two_moments():
    assert slope_per_minute([(0.0, 100.0), (30.0, 101.0), (60.0, 102.0), (90.0, 103.0)]) == pytest.approx(2.0)
    assert slope_per_minute([(0.0, 50.0), (60.0, 50.0), (120.0, 50.0)]) == 0.0
    assert slope_per_minute([(0.0, 80.0), (60.0, 70.0)]) == pytest.approx(-10.0)
    assert math.isnan(slope_per_minute([(10.0, 1.0)]))
    assert math.isnan(slope_per_minute([(10.0, 1.0), (10.0, 5.0)]))


def test_the_slope_fits_noisy_points_by_least_squares():
    # A sawtooth of ±3 MB around 1 MB/min: the fit finds the trend, not the teeth.
    points = [(float(s), 200 + s / 60 + (3 if (s // 5) % 2 else -3)) for s in range(0, 600, 5)]
    assert slope_per_minute(points) == pytest.approx(1.0, abs=0.1)


def test_the_verdict_is_growing_only_above_the_threshold():
    assert verdict(0.4, growing_above=1.0) == BOUNDED
    assert verdict(1.0, growing_above=1.0) == BOUNDED
    assert verdict(1.5, growing_above=1.0) == GROWING
    assert verdict(-20.0, growing_above=1.0) == BOUNDED
    assert verdict(math.nan) == TOO_SHORT


# --- per-service rows ---------------------------------------------------------------------


def sample(seconds: float, phase: str = LOAD, **rss_mb: float) -> Sample:
    return Sample(
        seconds,
        phase,
        {name: round(mb * MB) for name, mb in rss_mb.items()},
        {name: 0.5 for name in rss_mb},
        {name: 2 for name in rss_mb},
    )


def test_a_service_that_grows_then_levels_off_is_bounded_and_one_that_keeps_growing_is_not():
    samples = []
    for seconds in range(0, 121, 5):
        warm = min(seconds, 40) / 2  # +20 MB in the first 40 s, flat afterwards
        samples.append(sample(float(seconds), ingest=100 + warm, ledger=300 + seconds / 10))  # ledger: +6 MB/min
    samples.append(sample(130.0, DRAIN, ingest=115.0, ledger=305.0))
    rows = {r.service: r for r in summarise_memory(samples, growing_above=1.0, shared=("ledger",))}

    ingest = rows["ingest"]
    assert (ingest.start_mb, ingest.one_minute_mb, ingest.peak_mb, ingest.end_mb, ingest.after_drain_mb) == (
        pytest.approx(100.0),
        pytest.approx(120.0),
        pytest.approx(120.0),
        pytest.approx(120.0),
        pytest.approx(115.0),
    )
    assert ingest.slope_mb_per_min == pytest.approx(0.0, abs=1e-6)  # the last half only: the warm-up is not a leak
    assert ingest.verdict == BOUNDED
    assert (ingest.processes, ingest.cpu_percent, ingest.shared) == (2, pytest.approx(50.0), False)

    ledger = rows["ledger"]
    assert ledger.slope_mb_per_min == pytest.approx(6.0)
    assert ledger.verdict == GROWING
    assert ledger.peak_mb == pytest.approx(312.0)
    assert ledger.shared


def test_a_run_shorter_than_a_minute_has_no_one_minute_figure_and_no_drain_figure_without_drain_samples():
    rows = summarise_memory([sample(0.0, redis=10.0), sample(20.0, redis=11.0), sample(40.0, redis=12.0)])
    [redis] = rows
    assert math.isnan(redis.one_minute_mb)
    assert math.isnan(redis.after_drain_mb)
    assert summarise_memory([]) == []


def test_the_memory_table_has_a_row_per_service_and_marks_the_shared_broker():
    rows = summarise_memory(
        [sample(0.0, ingest=100.0, rabbitmq=400.0), sample(20.0, ingest=101.0), sample(40.0, ingest=102.0)],
        shared=("rabbitmq",),
    )
    table = memory_table(rows).splitlines()
    assert table[0].startswith("| service | processes | RSS start | after 1 min | peak")
    assert len(table) == 4
    assert table[2] == "| ingest | 2 | 100.0 MB | — | 102.0 | 102.0 | — | +3.00 MB/min | growing | 50 % |"
    assert table[3] == "| rabbitmq (shared) | 2 | 400.0 MB | — | 400.0 | 400.0 | — | — | too short | 50 % |"


# --- delivery -----------------------------------------------------------------------------


def test_delivery_is_intact_only_when_drained_with_every_number_once():
    intact = Delivery(accepted=5000, submits=5000, destinations=5000, queued=0, drained=True)
    assert (intact.lost, intact.duplicates, intact.intact) == (0, 0, True)
    assert "nothing lost, nothing sent twice" in delivery_line(intact)

    twice = Delivery(accepted=5000, submits=5003, destinations=5000, queued=0, drained=True)
    assert (twice.lost, twice.duplicates, twice.intact) == (0, 3, False)
    assert "0 lost, 3 sent twice" in delivery_line(twice)

    short = Delivery(accepted=5000, submits=4990, destinations=4990, queued=10, drained=False)
    assert (short.lost, short.intact) == (10, False)
    assert delivery_line(short).startswith("NOT drained")
    assert "10 messages left in the queues" in delivery_line(short)


def test_accepted_recipients_are_summed_over_ingests_labels():
    metrics = (
        "# HELP rsms_ingest_accepted_recipients_total Recipients in accepted send requests\n"
        "# TYPE rsms_ingest_accepted_recipients_total counter\n"
        'rsms_ingest_accepted_recipients_total{project="bench",test="false"} 12345.0\n'
        'rsms_ingest_accepted_recipients_total{project="demo",test="true"} 5.0\n'
        'rsms_ingest_requests_total{code="OK",endpoint="send"} 12350.0\n'
    )
    assert accepted_from_metrics(metrics) == 12350
    assert accepted_from_metrics('rsms_ingest_requests_total{code="OK",endpoint="send"} 1.0\n') is None


def test_queue_lists_from_rabbitmqctl_are_read_without_their_header():
    text = "name\tmessages\nrsms.accepted\t12\nrsms.ledger.accepted\t0\nrsms.outcomes\t3\n"
    assert parse_queue_list(text) == {"rsms.accepted": 12, "rsms.ledger.accepted": 0, "rsms.outcomes": 3}
    assert parse_queue_list("") == {}


# --- open-loop latency --------------------------------------------------------------------


def latency(lag_p99_ms: float, achieved: float, p99_ms: float) -> Latency:
    return Latency(
        sent=30_000, ok=29_990, failed=10, p50_ms=4.0, p99_ms=p99_ms, max_ms=300.0,
        generator_lag_p99_ms=lag_p99_ms, achieved_rate=achieved, p90_ms=9.0, answered=29_995,
        socket_errors=5, unanswered=0,
    )  # fmt: skip


def test_the_generator_is_behind_when_it_sent_late_or_below_the_rate():
    assert not generator_behind(lag_p99_ms=1.0, achieved_rate=999.0, rate=1000.0)
    assert generator_behind(lag_p99_ms=12.0, achieved_rate=1000.0, rate=1000.0)
    assert generator_behind(lag_p99_ms=0.5, achieved_rate=900.0, rate=1000.0)


def test_the_latency_table_shows_the_percentiles_the_verdict_and_whether_the_figure_is_the_machines():
    kept = "\n".join(latency_table(latency(1.0, 1000.0, 42.0), 1000.0, 30.0, 64, 50.0))
    row = "| 30,000 | 1,000/s | 29,995 | 29,990 | 5 | 0 | 4.0 ms | 9.0 ms | 42.0 ms | 300.0 ms | 1.0 ms | PASS |"
    assert row in kept
    assert "machine's" not in kept
    behind = "\n".join(latency_table(latency(40.0, 700.0, 420.0), 1000.0, 30.0, 64, 50.0))
    assert "**MISS**" in behind
    assert "the machine's, not the gateway's alone" in behind


def test_percentiles_that_may_be_an_unanswered_requests_wait_are_lower_bounds():
    # 100 of 1,000 unanswered after a 10 s grace: each counts with its wait, at least 10 s.
    overloaded = Latency(
        sent=1000, ok=900, failed=100, p50_ms=30.0, p99_ms=10_900.0, max_ms=12_000.0, generator_lag_p99_ms=0.0,
        achieved_rate=1000.0, p90_ms=800.0, answered=900, unanswered=100, grace_ms=10_000.0,
    )  # fmt: skip
    assert [overloaded.lower_bound(v) for v in (30.0, 9_999.0, 10_000.0, 12_000.0)] == [False, False, True, True]
    table = "\n".join(latency_table(overloaded, 1000.0, 1.0, 64, 50.0))
    assert "| 30.0 ms | 800.0 ms | ≥ 10,900.0 ms | ≥ 12,000.0 ms |" in table
    assert "**MISS**" in table
    assert "a lower bound" in table
    answered_all = Latency(1000, 1000, 0, 3.0, 40.0, 12_000.0, 0.0, 1000.0, 9.0, answered=1000)
    assert not answered_all.lower_bound(12_000.0)


# --- the sink's distinct numbers ------------------------------------------------------------


def submit(sequence: int, destination: str) -> bytes:
    return bytes(smpp34.SubmitSm("RSMS", destination, b"code 482913", sequence_number=sequence).encode())


def test_the_sink_counts_distinct_destinations_so_a_number_sent_twice_shows():
    counters = smpp_sink.Counters()
    buffer = bytearray(b"".join(submit(n, f"479{1000000 + n % 4:07d}") for n in range(1, 7)))
    for command_id, _, sequence, body in smpp_sink.split_pdus(buffer):
        smpp_sink.answer(command_id, sequence, counters, 1.0, body)
    assert (counters.submits, len(counters.destinations)) == (6, 4)
    assert b"4791000001" in counters.destinations
    counters.reset()
    assert (counters.submits, len(counters.destinations)) == (0, 0)


def test_a_cut_short_submit_has_no_destination():
    assert smpp_sink.destination_addr(b"") == b""
    assert smpp_sink.destination_addr(b"\x00\x01\x01RSMS") == b""


def test_listening_sockets_are_read_from_proc_net_tcp():
    # Port 1 never listens here: no inode; RabbitMQ's 5672 (the suite's broker) does.
    assert listening_sockets(1) == set()
    assert listening_sockets(5672)


# --- what Redis holds ---------------------------------------------------------------------


def test_redis_keys_are_grouped_by_family_without_their_ids():
    assert key_family("rsms:dispatch:markers:3f2a9c0d") == "rsms:dispatch:markers"
    assert key_family("rsms:receipts:state:3f2a9c0d:+4790000001") == "rsms:receipts:state"
    assert key_family("rsms:dispatch:generation") == "rsms:dispatch:generation"
    assert key_family("rsms:rl:bench:1733300000") == "rsms:rl:bench"
    assert key_family("rsms:receipts:part:eab") == "rsms:receipts:part"  # a hex id of letters only
    assert key_family("rsms:accepted:bench:4f1c") == "rsms:accepted:bench"
    assert key_family("12345") == "(other)"


def test_the_key_families_line_gives_shares_and_ttls():
    line = key_families_line(
        {"rsms:dispatch:markers": 600, "rsms:accepted": 300, "rsms:dispatch:generation": 100},
        {"rsms:dispatch:markers": 7 * 86_400, "rsms:accepted": 3_600, "rsms:dispatch:generation": -1},
        sampled=1000,
        total=131_787,
    )
    assert line == (
        "131,787 keys; of 1,000 sampled: rsms:dispatch:markers 60% (TTL 7.0 d), "
        "rsms:accepted 30% (TTL 3,600 s), rsms:dispatch:generation 10% (no TTL)"
    )


def test_the_key_families_line_folds_the_long_tail():
    counts = {f"family-{n}": 10 - n for n in range(9)}
    line = key_families_line(counts, {}, sampled=sum(counts.values()), total=45, shown=3)
    assert line == "45 keys; of 54 sampled: family-0 19% (no TTL), family-1 17% (no TTL), 7 other families 65%"


def test_the_json_report_has_null_where_a_figure_does_not_exist():
    report = {"memory": [{"one_minute_mb": math.nan, "peak_mb": 402.5}], "samples": [[math.nan, 1]], "note": "x"}
    assert without_nan(report) == {"memory": [{"one_minute_mb": None, "peak_mb": 402.5}], "samples": [[None, 1]],
                                   "note": "x"}  # fmt: skip
