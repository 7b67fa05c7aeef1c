"""The figures of `bench.peers` and the table it prints: plain functions of the measurements.

One `Round` is one system under one load for one round; `summarise` takes the median of
each figure over the rounds, and `ratios` divides RSMS's medians by each peer's, round by
round paired (the rounds of different systems ran back to back, so a pair shares the
machine's mood) and then the median of those quotients.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import asdict, dataclass, field

SINGLE = "single"
BULK = "bulk"
FIGURES = ("accepted_per_s", "e2e_per_s", "bulk_accepted_per_s", "bulk_e2e_per_s", "cpu_ms_per_msg")
HEADINGS = (
    "accepted/s",
    "end to end msgs/s",
    "1000-recipient accept / e2e (recipients/s)",
    "CPU per message",
)


@dataclass(frozen=True)
class Round:
    """One wrk run against one system, and what reached the sink because of it."""

    system: str
    load: str  # SINGLE or BULK
    accepted: int  # recipients in 2xx answers
    wrk_seconds: float
    submits: int  # submit_sm the sink counted
    submit_span_seconds: float  # first to last submit
    cpu_seconds: float  # the system's processes, RabbitMQ's share included where it uses it
    failed: int = 0  # non-2xx answers and socket errors
    rabbitmq_cpu_seconds: float = 0.0  # the part of cpu_seconds that was RabbitMQ's (shared: noisy)
    sink_cpu_seconds: float = 0.0  # the sink's own CPU (not the system's): near wall time, the sink was the limit
    cpu_parts: dict[str, float] = field(default_factory=dict)  # cpu_seconds by process (service, redis, rabbitmq)
    p99_ms: float = math.nan  # wrk's (closed loop: a latency under saturation, not at a set rate)

    @property
    def accepted_per_s(self) -> float:
        return self.accepted / self.wrk_seconds if self.wrk_seconds > 0 else math.nan

    @property
    def e2e_per_s(self) -> float:
        # n submits span n-1 intervals; one submit has no rate.
        if self.submits < 2 or self.submit_span_seconds <= 0:
            return math.nan
        return (self.submits - 1) / self.submit_span_seconds

    @property
    def cpu_ms_per_msg(self) -> float:
        return self.cpu_seconds * 1000 / self.submits if self.submits else math.nan

    @property
    def rabbitmq_ms_per_msg(self) -> float:
        return self.rabbitmq_cpu_seconds * 1000 / self.submits if self.submits else math.nan


@dataclass
class Summary:
    system: str
    label: str
    medians: dict[str, float] = field(default_factory=dict)
    rounds: dict[str, list[float]] = field(default_factory=dict)


def _median(values: list[float]) -> float:
    finite = [v for v in values if not math.isnan(v)]
    return statistics.median(finite) if finite else math.nan


def per_round(rounds: list[Round], system: str) -> dict[str, list[float]]:
    """Each figure of `system`, one value a round, in the order the rounds ran."""
    single = [r for r in rounds if r.system == system and r.load == SINGLE]
    bulk = [r for r in rounds if r.system == system and r.load == BULK]
    return {
        "accepted_per_s": [r.accepted_per_s for r in single],
        "e2e_per_s": [r.e2e_per_s for r in single],
        "bulk_accepted_per_s": [r.accepted_per_s for r in bulk],
        "bulk_e2e_per_s": [r.e2e_per_s for r in bulk],
        "cpu_ms_per_msg": [r.cpu_ms_per_msg for r in single],
        "rabbitmq_ms_per_msg": [r.rabbitmq_ms_per_msg for r in single],
    }


def summarise(rounds: list[Round], labels: dict[str, str]) -> list[Summary]:
    summaries = []
    for system, label in labels.items():
        values = per_round(rounds, system)
        summaries.append(Summary(system, label, {k: _median(v) for k, v in values.items()}, values))
    return summaries


def paired_ratio(ours: list[float], theirs: list[float]) -> float:
    """Median of round-by-round quotients (round i of one against round i of the other)."""
    quotients = [a / b for a, b in zip(ours, theirs, strict=False) if b and not math.isnan(a) and not math.isnan(b)]
    return statistics.median(quotients) if quotients else math.nan


def ratios(summaries: list[Summary], ours: str = "rsms") -> dict[str, dict[str, float]]:
    """{peer: {figure: RSMS / peer}}; for CPU per message below 1 is better for RSMS."""
    by_system = {s.system: s for s in summaries}
    if ours not in by_system:
        return {}
    mine = by_system[ours]
    return {
        peer.system: {k: paired_ratio(mine.rounds[k], peer.rounds[k]) for k in FIGURES}
        for peer in summaries
        if peer.system != ours
    }


def _number(value: float) -> str:
    return "—" if math.isnan(value) else f"{value:,.0f}"


def _ratio(value: float) -> str:
    return "—" if math.isnan(value) else f"{value:.2f}×"


def table_rows(summaries: list[Summary], peer_ratios: dict[str, dict[str, float]]) -> list[list[str]]:
    """Rows for the printed (Markdown) table: one per system, then one per RSMS/peer ratio."""
    rows = []
    for s in summaries:
        m = s.medians
        cpu = "—" if math.isnan(m["cpu_ms_per_msg"]) else f"{m['cpu_ms_per_msg']:.2f} ms"
        bulk = f"{_number(m['bulk_accepted_per_s'])} / {_number(m['bulk_e2e_per_s'])}"
        rows.append([s.label, _number(m["accepted_per_s"]), _number(m["e2e_per_s"]), bulk, cpu])
    for peer, r in peer_ratios.items():
        label = next(s.label for s in summaries if s.system == peer).split(" (")[0]
        bulk = f"{_ratio(r['bulk_accepted_per_s'])} / {_ratio(r['bulk_e2e_per_s'])}"
        rows.append(
            [
                f"RSMS / {label}",
                _ratio(r["accepted_per_s"]),
                _ratio(r["e2e_per_s"]),
                bulk,
                _ratio(r["cpu_ms_per_msg"]),
            ]
        )
    return rows


def markdown(rows: list[list[str]]) -> str:
    lines = [
        "| system | " + " | ".join(HEADINGS) + " |",
        "| --- | ---: | ---: | ---: | ---: |",
        *("| " + " | ".join(row) + " |" for row in rows),
    ]
    return "\n".join(lines)


def as_json(
    rounds: list[Round], summaries: list[Summary], peer_ratios: dict[str, dict[str, float]]
) -> dict[str, object]:
    def clean(value: float) -> float | None:
        return None if math.isnan(value) else round(value, 4)

    return {
        "rounds": [
            {
                **asdict(r),
                "accepted_per_s": clean(r.accepted_per_s),
                "e2e_per_s": clean(r.e2e_per_s),
                "cpu_ms_per_msg": clean(r.cpu_ms_per_msg),
                "rabbitmq_ms_per_msg": clean(r.rabbitmq_ms_per_msg),
            }
            for r in rounds
        ],
        "medians": {s.system: {k: clean(v) for k, v in s.medians.items()} for s in summaries},
        "ratios": {peer: {k: clean(v) for k, v in r.items()} for peer, r in peer_ratios.items()},
    }
