"""The figures of `bench.saturation` and the tables it prints: plain functions of the samples.

A `Sample` is what the bench read from /proc at one moment: the resident set (RSS) and the
CPU share of every service of the gateway, its own redis-server, and the machine's RabbitMQ
(shared with everyone using it, so reported as such). `summarise_memory` turns the samples
of a run into one row per service: RSS at the start of the load, after a minute, at its
peak, at the end of the load and after the queues drained, and the least-squares slope of
RSS over the last half of the load, with a verdict: "growing" when the slope is above a
threshold (MB a minute), "bounded" otherwise. A 2-minute run cannot tell a slow leak from a
cache filling up; a 10-minute run's last 5 minutes can tell more.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from bench.ingest_loadgen import Latency

MB = 1024 * 1024
LOAD = "load"
DRAIN = "drain"
BOUNDED = "bounded"
GROWING = "growing"
TOO_SHORT = "too short"
DEFAULT_GROWING_ABOVE_MB_PER_MIN = 1.0
GENERATOR_LAG_LIMIT_MS = 5.0
"""The open-loop client counts as behind its schedule when it sent later than this (p99)."""


@dataclass(frozen=True)
class Sample:
    seconds: float  # since the load started
    phase: str  # LOAD while the load runs, DRAIN after
    rss: dict[str, int]  # bytes, summed over the service's processes
    cpu: dict[str, float] = field(default_factory=dict)  # share of one core since the previous sample
    processes: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class ServiceMemory:
    service: str
    processes: int
    start_mb: float
    one_minute_mb: float  # NaN when the load ran less than a minute
    peak_mb: float
    end_mb: float
    after_drain_mb: float  # NaN when nothing was sampled after the load
    slope_mb_per_min: float  # over the last half of the load
    verdict: str
    cpu_percent: float  # mean over the load, % of one core
    shared: bool = False


def slope_per_minute(points: Sequence[tuple[float, float]]) -> float:
    """Least-squares slope of (seconds, MB) points, in MB a minute; NaN with fewer than two
    distinct times."""
    if len(points) < 2:
        return math.nan
    mean_x = sum(x for x, _ in points) / len(points)
    mean_y = sum(y for _, y in points) / len(points)
    spread = sum((x - mean_x) ** 2 for x, _ in points)
    if spread == 0:
        return math.nan
    per_second = sum((x - mean_x) * (y - mean_y) for x, y in points) / spread
    return per_second * 60


def verdict(slope_mb_per_min: float, growing_above: float = DEFAULT_GROWING_ABOVE_MB_PER_MIN) -> str:
    if math.isnan(slope_mb_per_min):
        return TOO_SHORT
    return GROWING if slope_mb_per_min > growing_above else BOUNDED


def summarise_memory(
    samples: Sequence[Sample],
    growing_above: float = DEFAULT_GROWING_ABOVE_MB_PER_MIN,
    shared: Sequence[str] = (),
) -> list[ServiceMemory]:
    """One row per service seen in the load's samples, in the order first seen."""
    load = sorted((s for s in samples if s.phase == LOAD), key=lambda s: s.seconds)
    drain = sorted((s for s in samples if s.phase == DRAIN), key=lambda s: s.seconds)
    if not load:
        return []
    duration = load[-1].seconds
    services = list(dict.fromkeys(name for s in load for name in s.rss))
    rows = []
    for name in services:
        series = [(s.seconds, s.rss[name] / MB) for s in load if name in s.rss]
        after_minute = next((mb for seconds, mb in series if seconds >= 60), math.nan)
        last_half = [(seconds, mb) for seconds, mb in series if seconds >= duration / 2]
        slope = slope_per_minute(last_half)
        cpu = [s.cpu[name] for s in load if name in s.cpu]
        drained = [s.rss[name] / MB for s in drain if name in s.rss]
        rows.append(
            ServiceMemory(
                service=name,
                processes=max((s.processes.get(name, 0) for s in load), default=0),
                start_mb=series[0][1],
                one_minute_mb=after_minute,
                peak_mb=max(mb for _, mb in series),
                end_mb=series[-1][1],
                after_drain_mb=drained[-1] if drained else math.nan,
                slope_mb_per_min=slope,
                verdict=verdict(slope, growing_above),
                cpu_percent=100 * sum(cpu) / len(cpu) if cpu else math.nan,
                shared=name in shared,
            )
        )
    return rows


def _mb(value: float) -> str:
    return "—" if math.isnan(value) else f"{value:,.1f}"


def memory_table(rows: Sequence[ServiceMemory]) -> str:
    """A markdown table people read: RSS in MB (MiB), slope in MB/min, CPU in % of one core."""
    lines = [
        "| service | processes | RSS start | after 1 min | peak | end of load | after drain "
        "| slope, last half | verdict | CPU (mean) |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: |",
    ]
    for r in rows:
        name = f"{r.service} (shared)" if r.shared else r.service
        slope = "—" if math.isnan(r.slope_mb_per_min) else f"{r.slope_mb_per_min:+.2f} MB/min"
        cpu = "—" if math.isnan(r.cpu_percent) else f"{r.cpu_percent:.0f} %"
        lines.append(
            f"| {name} | {r.processes} | {_mb(r.start_mb)} MB | {_mb(r.one_minute_mb)} | {_mb(r.peak_mb)} "
            f"| {_mb(r.end_mb)} | {_mb(r.after_drain_mb)} | {slope} | {r.verdict} | {cpu} |"
        )
    return "\n".join(lines)


# --- delivery: nothing lost, nothing sent twice ---------------------------------------------


@dataclass(frozen=True)
class Delivery:
    accepted: int  # recipients the gateway accepted during the load (its own counter)
    submits: int  # submit_sm the sink received
    destinations: int  # distinct numbers among them (every request named a new number)
    queued: int | None  # messages left in the gateway's queues at the end; None: not read
    drained: bool  # the sink had every accepted message and the queues were empty

    @property
    def duplicates(self) -> int:
        return self.submits - self.destinations

    @property
    def lost(self) -> int:
        """Accepted numbers that never reached the sink (meaningful once drained)."""
        return max(0, self.accepted - self.destinations)

    @property
    def intact(self) -> bool:
        return self.drained and self.lost == 0 and self.duplicates == 0


def delivery_line(d: Delivery) -> str:
    queued = "not read" if d.queued is None else f"{d.queued:,}"
    state = "drained" if d.drained else "NOT drained"
    outcome = "nothing lost, nothing sent twice" if d.intact else f"{d.lost:,} lost, {d.duplicates:,} sent twice"
    return (
        f"{state}: accepted {d.accepted:,}, at the sink {d.submits:,} submits to {d.destinations:,} distinct "
        f"numbers, {queued} messages left in the queues: {outcome}"
    )


def accepted_from_metrics(text: str) -> int | None:
    """Recipients accepted, summed over projects, from ingest's /metrics (all workers
    together); None when the counter is not there."""
    total, found = 0.0, False
    for line in text.splitlines():
        if line.startswith("rsms_ingest_accepted_recipients_total"):
            total += float(line.rsplit(" ", 1)[1])
            found = True
    return round(total) if found else None


def parse_queue_list(text: str) -> dict[str, int]:
    """`rabbitmqctl -q list_queues name messages` output: queue → messages (ready and unacked)."""
    found = {}
    for line in text.splitlines():
        words = line.split()
        if len(words) == 2 and words[1].isdigit():
            found[words[0]] = int(words[1])
    return found


# --- open-loop latency ------------------------------------------------------------------


def generator_behind(lag_p99_ms: float, achieved_rate: float, rate: float) -> bool:
    """The client itself missed its schedule: the latency figure is then the machine's (the
    generator competed for the same cores), not the gateway's alone."""
    return lag_p99_ms > GENERATOR_LAG_LIMIT_MS or achieved_rate < 0.98 * rate


def latency_table(result: Latency, rate: float, seconds: float, connections: int, target_ms: float) -> list[str]:
    """The open-loop run as a markdown table, and a warning when the client fell behind."""
    met = "PASS" if result.p99_ms < target_ms else "**MISS**"

    def ms(value: float) -> str:
        return f"{'≥ ' if result.lower_bound(value) else ''}{value:,.1f} ms"

    lines = [
        f"## Open-loop latency: {rate:,.0f} single-recipient sends/s for {seconds:.0f} s, "
        f"{connections} keep-alive connections",
        "",
        "| scheduled | achieved rate | answered | 200 | socket errors | unanswered | p50 | p90 | p99 | max "
        f"| client lag p99 | p99 < {target_ms:.0f} ms |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
        f"| {result.sent:,} | {result.achieved_rate:,.0f}/s | {result.answered:,} | {result.ok:,} "
        f"| {result.socket_errors:,} | {result.unanswered:,} | {ms(result.p50_ms)} | {ms(result.p90_ms)} "
        f"| {ms(result.p99_ms)} | {ms(result.max_ms)} | {result.generator_lag_p99_ms:,.1f} ms | {met} |",
    ]
    if result.unanswered:
        lines += [
            "",
            f"{result.unanswered:,} requests had no answer when the client gave up on them; each counts with the "
            "time it had waited by then (at least the client's grace, "
            f"{result.grace_ms / 1000:.0f} s), so a figure marked ≥ is a lower bound.",
        ]
    if generator_behind(result.generator_lag_p99_ms, result.achieved_rate, rate):
        lines += [
            "",
            "The client fell behind its own schedule (it sent late, or below the rate): the machine was "
            "saturated, so this figure is the machine's, not the gateway's alone.",
        ]
    return lines


HEX_DIGITS = frozenset("0123456789abcdefABCDEF")


def key_family(key: str) -> str:
    """A Redis key without its ids: `rsms:dispatch:markers:3f2a…` → `rsms:dispatch:markers`
    (the leading segments that are words: letters, `_` and `-` only, and not all hex digits,
    which an id like `eab` is)."""
    family = []
    for segment in key.split(":"):
        if not segment.replace("_", "").replace("-", "").isalpha() or set(segment) <= HEX_DIGITS:
            break
        family.append(segment)
    return ":".join(family) or "(other)"


def key_families_line(counts: dict[str, int], ttls: dict[str, int], sampled: int, total: int, shown: int = 6) -> str:
    """What the gateway's Redis holds, by key family, from a sample of its keys."""
    ranked = sorted(counts.items(), key=lambda item: -item[1])
    parts = []
    if len(ranked) > shown:
        rest = sum(count for _, count in ranked[shown - 1 :])
        ranked = ranked[: shown - 1]
    for family, count in ranked:
        ttl = ttls.get(family, -1)
        kept = "no TTL" if ttl < 0 else f"TTL {ttl / 86_400:.1f} d" if ttl >= 86_400 else f"TTL {ttl:,} s"
        parts.append(f"{family} {count / max(sampled, 1):.0%} ({kept})")
    if len(counts) > shown:
        parts.append(f"{len(counts) - len(ranked)} other families {rest / max(sampled, 1):.0%}")
    return f"{total:,} keys; of {sampled:,} sampled: " + ", ".join(parts)
