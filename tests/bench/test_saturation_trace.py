"""The pure parts of `bench.saturation_trace`: the per-second table of the open-loop
requests, the run's summary, the CPU samples by second and in seconds, and the ledger's
deliveries per send. No timings: the benchmark itself measures those."""

from __future__ import annotations

import math

from bench.saturation_trace import (
    cpu_by_second,
    cpu_seconds,
    deliveries_line,
    machine_ticks,
    per_second,
    summary,
)

START = 100.0


def request(offset: float, latency: float, *, conn_wait: float = 0.0, lag: float = 0.0, status: int = 200):
    scheduled = START + offset
    return (scheduled, scheduled + lag, scheduled + conn_wait, scheduled + latency, status)


def test_requests_are_grouped_by_the_second_they_were_scheduled_in_not_answered_in():
    records = [request(0.1, 0.010), request(0.9, 2.5, conn_wait=2.4), request(1.2, 0.020, lag=0.003)]
    table = per_second(records, START)
    assert [row["second"] for row in table] == [0, 1]
    assert table[0]["sent"] == 2
    assert table[0]["max_ms"] == 2500.0
    assert math.isclose(table[0]["conn_wait_p99_ms"], 2400.0)
    assert table[1]["sent"] == 1
    assert math.isclose(table[1]["lag_max_ms"], 3.0)


def test_an_unanswered_request_counts_as_infinitely_late():
    records = [request(0.1, 0.010), (START + 0.5, START + 0.5, math.nan, math.nan, 0)]
    table = per_second(records, START)
    assert table[0]["max_ms"] == math.inf
    result = summary(records)
    assert result["sent"] == 2
    assert result["ok"] == 1
    assert result["max_ms"] == math.inf


def test_the_summary_percentiles_are_nearest_rank_over_all_requests():
    records = [request(i / 100, (i + 1) / 1000) for i in range(100)]
    result = summary(records)
    assert math.isclose(result["p50_ms"], 50.0)
    assert math.isclose(result["p99_ms"], 99.0)
    assert math.isclose(result["max_ms"], 100.0)
    assert result["client_lag_p99_ms"] == 0.0


def test_a_cpu_sample_covers_the_second_before_it_and_shares_are_averaged():
    samples = [
        {"at": START + 0.5, "span": 0.5, "cpu": {"ingest": 0.4}, "ledger_threads": {}, "load1": 1.0},
        {"at": START + 1.0, "span": 0.5, "cpu": {"ingest": 0.8}, "ledger_threads": {"MergeMutate": 0.5}, "load1": 1.0},
        {"at": START + 1.5, "span": 0.5, "cpu": {"ingest": 0.2}, "ledger_threads": {}, "load1": 2.0},
    ]
    seconds = cpu_by_second(samples, START)
    assert math.isclose(seconds[0]["ingest"], 0.6)
    assert math.isclose(seconds[0]["L:MergeMutate"], 0.5)
    assert math.isclose(seconds[1]["ingest"], 0.2)
    spent = cpu_seconds(samples)
    assert math.isclose(spent["ingest"], 0.7)


def test_cpu_seconds_skip_a_share_that_does_not_exist():
    samples = [{"at": START + 0.5, "span": 0.5, "cpu": {"machine_busy": math.nan, "ingest": 1.0}}]
    assert cpu_seconds(samples) == {"ingest": 0.5}


def test_ledger_deliveries_are_per_accepted_send_and_by_queue_without_the_prefix():
    before = {"rsms.ledger.accepted": 10.0, "rsms.ledger.outcomes": 10.0, "rsms.ledger.receipts": 0.0}
    after = {"rsms.ledger.accepted": 60.0, "rsms.ledger.outcomes": 35.0, "rsms.ledger.receipts": 0.0}
    line = deliveries_line(before, after, 100)
    assert "accepted 0.500" in line
    assert "outcomes 0.250" in line
    assert "receipts" not in line


def test_the_machine_counters_are_read():
    busy, idle = machine_ticks()
    assert busy >= 0
    assert idle >= 0
