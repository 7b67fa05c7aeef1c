"""RSMS side by side with Jasmin and Kannel: the same wrk load, the same SMPP sink.

    .venv/bin/python -m bench.peers --install          # once: Jasmin into var/peers/, Kannel and wrk via apt
    .venv/bin/python -m bench.peers [--rounds 3] [--seconds 10] [--systems rsms,jasmin,kannel] [--json]

Starts the counting SMPP sink (`bench/smpp_sink.py`) and every system (`bench/peers_systems.py`),
each bound to the sink; then, round by round, with the order rotated every round, drives
one system at a time with wrk (1 thread, 64 connections, one random recipient a request)
and waits until the sink has had every accepted message (or has been quiet for a while).
Then the same for 1,000 recipients a request, where the system has a way to take them.

Per round and system:
- accepted/s: 2xx answers / wrk's duration (× recipients a request);
- end to end: the sink's submit_sm count over the time from its first to its last submit;
- CPU per message: utime+stime of every process of the system (its own redis-server
  included; for RSMS and Jasmin, RabbitMQ's `beam.smp` too, shared with whatever else
  uses that RabbitMQ during the round) from the start of wrk to the last submit, over the
  submits.

The table shows medians over the rounds and RSMS/peer ratios (paired round by round).
The load average is printed before and after: figures from a busy machine are not
figures from a quiet one.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from bench.ingest_env import free_port
from bench.peers_systems import ROOT, Jasmin, Kannel, Load, Rsms, System, port_open, wait_until
from bench.peers_table import BULK, SINGLE, Round, as_json, markdown, ratios, summarise, table_rows

BULK_RECIPIENTS = 1000
CONNECTIONS = 64
QUIET_SECONDS = 3.0
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


# --- the sink -----------------------------------------------------------------------------


@dataclass
class SinkStats:
    submits: int
    first: float
    last: float
    destinations: int = 0  # distinct destination numbers among the submits


class Sink:
    def __init__(self) -> None:
        self.port = free_port()
        self.control_port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "bench.smpp_sink",
                "--port",
                str(self.port),
                "--control-port",
                str(self.control_port),
            ],
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
        )
        wait_until(lambda: port_open(self.control_port), "the SMPP sink", timeout=20, process=self.process)

    def _ask(self, command: str) -> str:
        with socket.create_connection(("127.0.0.1", self.control_port), timeout=5) as sock:
            sock.sendall(command.encode() + b"\n")
            return sock.makefile().readline().strip()

    def stats(self) -> SinkStats:
        data = json.loads(self._ask("stats"))
        return SinkStats(data["submits"], data["first"], data["last"], data.get("destinations", 0))

    def reset(self) -> None:
        self._ask("reset")

    def destinations(self) -> dict[str, int]:
        """Submits per destination number since the last reset."""
        counts: dict[str, int] = json.loads(self._ask("destinations"))
        return counts

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)


# --- CPU ----------------------------------------------------------------------------------


def cpu_ticks(pid: int) -> int | None:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return int(fields[11]) + int(fields[12])  # utime + stime


def rabbitmq_pids(port: int = 5672) -> list[int]:
    """The machine's RabbitMQ: the Erlang VM that boots `rabbit` and listens on `port`. Read,
    never touched. Not every `beam.smp`: each `rabbitmqctl` call runs one for a second (a
    hundred MB), and other RabbitMQ nodes started for tests run their own."""
    nodes = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if (entry / "comm").read_text().strip() == "beam.smp" and b"-s\0rabbit\0boot" in (
                    entry / "cmdline"
                ).read_bytes():
                    nodes.append(int(entry.name))
    if len(nodes) < 2:
        return nodes
    listening = listening_sockets(port)
    return [pid for pid in nodes if holds_socket(pid, listening)] or nodes


def listening_sockets(port: int) -> set[str]:
    """Inodes of the TCP sockets listening on `port` (state 0A in /proc/net/tcp*)."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                fields = line.split()
                if fields[1].rsplit(":", 1)[1] == f"{port:04X}" and fields[3] == "0A":
                    found.add(fields[9])
    return found


def holds_socket(pid: int, inodes: set[str]) -> bool:
    with contextlib.suppress(OSError):
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            with contextlib.suppress(OSError):
                target = str(fd.readlink())
                if target.startswith("socket:[") and target[8:-1] in inodes:
                    return True
    return False


def snapshot(pids: list[int]) -> dict[int, int]:
    return {pid: ticks for pid in pids if (ticks := cpu_ticks(pid)) is not None}


def cpu_seconds(before: dict[int, int], after: dict[int, int]) -> float:
    """CPU spent between two snapshots by the processes present in both."""
    return sum(after[pid] - before[pid] for pid in before.keys() & after.keys()) / CLOCK_TICKS


# --- wrk ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class WrkResult:
    requests: int
    accepted: int
    seconds: float
    socket_errors: int
    p99_ms: float


def run_wrk(load: Load, seconds: float, connections: int = CONNECTIONS) -> WrkResult:
    with tempfile.TemporaryDirectory(prefix="rsms-bench-peers-") as tmp:
        script = Path(tmp) / "load.lua"
        script.write_text(load.script)
        command = ["wrk", "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--timeout", "10s"]
        done = subprocess.run(
            [*command, "-s", str(script), load.url], capture_output=True, text=True, timeout=seconds + 60
        )
    line = next((ln for ln in done.stdout.splitlines() if ln.startswith("PEERS_RESULT ")), None)
    if done.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed ({done.returncode}): {done.stderr.strip() or done.stdout.strip()}")
    result = json.loads(line.removeprefix("PEERS_RESULT "))
    return WrkResult(
        result["requests"], result["accepted"], result["duration_us"] / 1e6, result["socket_errors"],
        result["p99_us"] / 1000,
    )  # fmt: skip


# --- one round ----------------------------------------------------------------------------


def drain(sink: Sink, expected: int, cap: float) -> tuple[SinkStats, bool]:
    """Waits until the sink has had no submit for a while: QUIET_SECONDS while fewer than
    `expected` arrived, one second after (requests in flight when wrk stopped are sent too,
    and must not land in the next round).

    Returns the stats and whether the system was still sending when `cap` ran out."""
    deadline = time.monotonic() + cap
    stats = sink.stats()
    changed = time.monotonic()
    while True:
        time.sleep(0.25)
        now = time.monotonic()
        latest = sink.stats()
        if latest.submits != stats.submits:
            changed = now
        stats = latest
        if now - changed > (1.0 if stats.submits >= expected else QUIET_SECONDS):
            return stats, False
        if now > deadline:
            return stats, True


def start_profilers(system: System, directory: Path, seconds: float, label: str) -> list[subprocess.Popen[bytes]]:
    """py-spy on every Python process of RSMS's services (uvicorn's workers each), collapsed stacks
    (`--format raw`) sampled at 50 Hz without pausing the process (`--nonblocking`), so the
    profile costs the system little; `bench.profile_summary` reads them."""
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    directory.mkdir(parents=True, exist_ok=True)
    started = []
    for part, pids in system.parts().items():
        if part not in ("ingest", "dispatcher", "ledger"):
            continue
        for pid in pids:
            output = directory / f"{label}-{part}-{pid}.txt"
            command = [spy, "record", "--pid", str(pid), "--rate", "50", "--nonblocking", "--format", "raw"]
            command += ["--duration", str(round(seconds)), "-o", str(output)]
            started.append(subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    return started


def measure(
    system: System,
    sink: Sink,
    recipients: int,
    seconds: float,
    drain_cap: float,
    connections: int = CONNECTIONS,
    profile: Path | None = None,
    label: str = "",
) -> Round:
    load = system.load(recipients)
    assert load is not None
    sink.reset()
    parts = system.parts()
    if system.uses_rabbitmq:
        parts["rabbitmq"] = rabbitmq_pids()
    parts["sink"] = [sink.process.pid] if sink.process is not None else []
    before = {name: snapshot(pids) for name, pids in parts.items()}
    profilers = start_profilers(system, profile, seconds, label) if profile is not None else []
    result = run_wrk(load, seconds, connections)
    accepted = result.accepted * recipients
    stats, capped = drain(sink, accepted, drain_cap)
    spent = {name: cpu_seconds(before[name], snapshot(pids)) for name, pids in parts.items()}
    for profiler in profilers:
        profiler.wait(60)
    sink_spent = spent.pop("sink")
    if capped:
        say(f"    !! {system.name} was still sending after {drain_cap:.0f} s of draining; later rounds may overlap")
    return Round(
        system=system.name,
        load=SINGLE if recipients == 1 else BULK,
        accepted=accepted,
        wrk_seconds=result.seconds,
        submits=stats.submits,
        submit_span_seconds=stats.last - stats.first,
        cpu_seconds=sum(spent.values()),
        failed=result.requests - result.accepted + result.socket_errors,
        rabbitmq_cpu_seconds=spent.get("rabbitmq", 0.0),
        sink_cpu_seconds=sink_spent,
        cpu_parts=spent,
        p99_ms=result.p99_ms,
    )


def progress(index: int, total: int, r: Round) -> str:
    missing = f", {r.accepted - r.submits:,} not (yet) at the sink" if r.submits < r.accepted else ""
    per_part = "  ".join(f"{name} {seconds * 1000 / max(r.submits, 1):.2f}" for name, seconds in r.cpu_parts.items())
    return (
        f"  [{index}/{total}] {r.system:<7} {r.load:<6} accepted {r.accepted_per_s:>10,.0f}/s  "
        f"e2e {r.e2e_per_s:>9,.0f}/s  p99 {r.p99_ms:,.0f} ms  "
        f"cpu {r.cpu_ms_per_msg:.2f} ms/msg (RabbitMQ {r.rabbitmq_ms_per_msg:.2f})  "
        f"({r.accepted:,} accepted, {r.submits:,} submits, {r.failed:,} failed{missing}; "
        f"sink busy {r.sink_cpu_seconds / max(r.submit_span_seconds, 1e-9):.0%})\n"
        f"        CPU ms/msg by part: {per_part}"
    )


# --- main ---------------------------------------------------------------------------------


def build(names: list[str], sink_port: int, rsms_settings: dict[str, str], window: int | None = None) -> list[System]:
    """The systems to run; `window`, if given, is the SMPP window of RSMS and Kannel alike
    (Jasmin's SMPP client has none: it never waits for responses before the next submit)."""
    if window:
        rsms_settings = {**rsms_settings, "RSMS_SMPP_WINDOW": str(window)}
    makers: dict[str, Callable[[], System]] = {
        "rsms": lambda: Rsms(sink_port, rsms_settings),
        "jasmin": lambda: Jasmin(sink_port),
        "kannel": lambda: Kannel(sink_port, window),
    }
    return [makers[name]() for name in names]


def install(names: list[str]) -> None:
    if "jasmin" in names:
        say("installing Jasmin from PyPI into var/peers/jasmin-venv …")
        Jasmin.install()
    if "kannel" in names:
        say("installing Kannel from Debian's packages …")
        Kannel.install()
    if not shutil.which("wrk"):
        subprocess.run(["apt-get", "install", "-y", "-q", "wrk"], check=True)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--install", action="store_true", help="Install Jasmin (PyPI) and Kannel and wrk (apt).")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=10.0, help="wrk duration of a single-recipient run.")
    parser.add_argument("--bulk-seconds", type=float, default=3.0, help="wrk duration of a 1000-recipient run.")
    parser.add_argument(
        "--bulk-connections",
        type=int,
        default=8,
        help="wrk connections of a 1000-recipient run (fewer: 64 × 1,000 recipients in flight when wrk stops "
        "would take minutes to drain through one SMPP bind).",
    )
    parser.add_argument("--drain-cap", type=float, default=180.0, help="Longest wait for the sink to get everything.")
    parser.add_argument("--systems", default="rsms,jasmin,kannel")
    parser.add_argument("--no-bulk", action="store_true", help="Skip the 1000-recipient runs.")
    parser.add_argument(
        "--window",
        type=int,
        help="The SMPP window (submits awaiting a response) of RSMS and Kannel alike; default: each one's own (10).",
    )
    parser.add_argument("--set", action="append", default=[], metavar="RSMS_X=VALUE", help="An RSMS setting.")
    parser.add_argument("--json", action="store_true", help="Print the results as JSON instead of the table.")
    parser.add_argument("--hold", type=float, default=0.0, help="After starting, wait this long (to attach py-spy).")
    parser.add_argument(
        "--profile",
        type=Path,
        metavar="DIR",
        help="py-spy RSMS's services during its single-recipient rounds (collapsed stacks into DIR; "
        "summarise with `python -m bench.profile_summary DIR`). The profiler costs CPU: not for the table.",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    names = [n.strip() for n in args.systems.split(",") if n.strip()]
    unknown = set(names) - {"rsms", "jasmin", "kannel"}
    if unknown:
        say(f"unknown systems: {', '.join(sorted(unknown))}")
        return 2
    if args.install:
        install(names)
    load_before = os.getloadavg()
    say(f"load average before: {load_before[0]:.2f} {load_before[1]:.2f} {load_before[2]:.2f} ({os.cpu_count()} cores)")
    rsms_settings = dict(item.split("=", 1) for item in args.set)
    sink = Sink()
    systems: list[System] = []
    rounds: list[Round] = []
    broker_idle = float("nan")
    try:
        sink.start()
        say(f"SMPP sink on port {sink.port}")
        for system in build(names, sink.port, rsms_settings, args.window):
            say(f"starting {system.label} …")
            systems.append(system)
            system.start()
        if args.hold:
            for system in systems:
                say(f"  {system.name}: pids {system.pids()}")
            time.sleep(args.hold)
        for system in systems:  # warm-up, not counted: imports, connections, first binds
            warm = measure(system, sink, 1, 1, args.drain_cap)
            say(f"  warm-up {system.name}: {warm.accepted:,} accepted, {warm.submits:,} at the sink")
        broker = rabbitmq_pids()
        idle_before = snapshot(broker)
        time.sleep(3)
        broker_idle = cpu_seconds(idle_before, snapshot(broker)) / 3
        say(
            f"RabbitMQ's CPU with every system idle (other users of it, the systems' idle traffic): "
            f"{broker_idle * 1000:.0f} ms/s"
        )
        plan = [(r, s, 1, args.seconds, CONNECTIONS) for r in range(args.rounds) for s in rotated(systems, r)]
        if not args.no_bulk:
            plan += [
                (r, s, BULK_RECIPIENTS, args.bulk_seconds, args.bulk_connections)
                for r in range(args.rounds)
                for s in rotated(systems, r)
                if s.load(BULK_RECIPIENTS) is not None
            ]
        for index, (r, system, recipients, seconds, connections) in enumerate(plan, 1):
            profile = args.profile if system.name == "rsms" and recipients == 1 else None
            result = measure(system, sink, recipients, seconds, args.drain_cap, connections, profile, f"round{r + 1}")
            rounds.append(result)
            say(progress(index, len(plan), result))
    finally:
        for system in reversed(systems):
            with contextlib.suppress(Exception):
                system.stop()
        sink.stop()
    load_after = os.getloadavg()
    labels = {s.name: s.label for s in systems}
    summaries = summarise(rounds, labels)
    peer_ratios = ratios(summaries)
    if args.json:
        data = as_json(rounds, summaries, peer_ratios)
        data["load_average"] = {"before": list(load_before), "after": list(load_after)}
        data["rabbitmq_idle_cpu_ms_per_s"] = round(broker_idle * 1000, 1)
        data["guarantees"] = {s.name: s.guarantees for s in systems}
        print(json.dumps(data, indent=2))
        return 0
    print(markdown(table_rows(summaries, peer_ratios)))
    print()
    print(
        f"{args.rounds} rounds, medians; wrk 1 thread, {CONNECTIONS} connections for {args.seconds:.0f} s single, "
        f"{args.bulk_connections} connections for {args.bulk_seconds:.0f} s 1000-recipient; "
        "ratios paired by round (CPU: below 1× is less CPU for RSMS)."
    )
    shares = ", ".join(
        f"{s.label.split(' (')[0]} {s.medians['rabbitmq_ms_per_msg']:.2f} ms"
        for s in summaries
        if next(x for x in systems if x.name == s.system).uses_rabbitmq
    )
    if shares:
        print(
            f"CPU per message includes RabbitMQ's (shared with the machine's other users; "
            f"{broker_idle * 1000:.0f} ms/s when every system idled): {shares}."
        )
    if any(s.load(BULK_RECIPIENTS) is None for s in systems):
        print(
            "—: the system's HTTP API takes one recipient a request (Jasmin: batches only through its Celery REST API)."
        )
    print(
        f"load average before {load_before[0]:.2f} {load_before[1]:.2f} {load_before[2]:.2f}, "
        f"after {load_after[0]:.2f} {load_after[1]:.2f} {load_after[2]:.2f} ({os.cpu_count()} cores)"
    )
    for system in systems:
        print(f"- {system.label}: {system.guarantees}")
    return 0


def rotated(systems: list[System], by: int) -> list[System]:
    """Round r starts with system r: no system always runs first (or right after another)."""
    if not systems:
        return []
    by %= len(systems)
    return systems[by:] + systems[:by]


if __name__ == "__main__":
    raise SystemExit(main())
