"""Load generators for `bench.ingest_send`: closed-loop throughput and open-loop latency.

- Throughput: `wrk` (C, epoll, keep-alive) when installed; otherwise Python processes with
  raw asyncio HTTP/1.1 keep-alive connections. Both keep a fixed number of requests in
  flight and count only 200 answers.
- Latency at a fixed rate: an open-loop asyncio client. Requests are *scheduled* at fixed
  intervals whatever the server does, and latency runs from the scheduled time, so a stall
  is charged to every request it delayed (no coordinated omission). A request waiting for
  a free connection is waiting on the server, and that wait counts too.

Every request carries the same body; the servers are told apart only by their port.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import multiprocessing
import os
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

WRK_SCRIPT = """
-- POST the body in $RSMS_BENCH_BODY; report a JSON line at the end for the bench to read.
local file = assert(io.open(os.getenv("RSMS_BENCH_BODY"), "rb"))
wrk.method = "POST"
wrk.body = file:read("*a")
file:close()
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. os.getenv("RSMS_BENCH_KEY")

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '\\nRSMS_RESULT {"requests":%d,"duration_us":%d,"non_2xx":%d,"socket_errors":%d,'
      .. '"p50_us":%d,"p99_us":%d}\\n',
    summary.requests, summary.duration, e.status, e.connect + e.read + e.write + e.timeout,
    latency:percentile(50), latency:percentile(99)))
end
"""


@dataclass(frozen=True)
class Target:
    host: str
    port: int
    path: str
    body: bytes
    key: str

    def request_bytes(self, extra_headers: str = "") -> bytes:
        """`extra_headers`: more header lines, each ending in CRLF (an Idempotency-Key)."""
        head = (
            f"POST {self.path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
            f"Authorization: Bearer {self.key}\r\nContent-Type: application/json\r\n{extra_headers}"
            f"Content-Length: {len(self.body)}\r\n\r\n"
        )
        return head.encode() + self.body


@dataclass(frozen=True)
class Throughput:
    ok: int
    failed: int
    """Non-200 answers and socket errors: any of them makes the run an error."""
    seconds: float

    @property
    def rate(self) -> float:
        return self.ok / self.seconds


@dataclass(frozen=True)
class Latency:
    sent: int
    ok: int
    failed: int
    """Non-200 answers, socket errors and requests still unanswered at the end."""
    p50_ms: float
    p99_ms: float
    max_ms: float
    generator_lag_p99_ms: float
    """How late the generator itself sent (p99): near 0 means it kept the schedule."""
    achieved_rate: float
    p90_ms: float = float("nan")
    answered: int = 0
    """Requests that got an answer, whatever its status."""
    socket_errors: int = 0
    unanswered: int = 0
    """Requests with no answer `grace` seconds after the last was scheduled (cancelled). The
    percentiles count each as the time it had waited then: at least the grace."""
    grace_ms: float = 10_000.0

    def lower_bound(self, value_ms: float) -> bool:
        """Whether a percentile of `value_ms` is only a lower bound: every unanswered request
        had waited at least the grace, so a figure below it is exact, one at or above it may
        be an unanswered request's wait so far."""
        return self.unanswered > 0 and value_ms >= self.grace_ms


def wrk_path() -> str | None:
    return shutil.which("wrk")


def run_wrk(target: Target, *, seconds: float, connections: int, threads: int) -> Throughput:
    with tempfile.TemporaryDirectory(prefix="rsms-bench-wrk-") as tmp:
        script = Path(tmp) / "post.lua"
        script.write_text(WRK_SCRIPT)
        body = Path(tmp) / "body.json"
        body.write_bytes(target.body)
        env = {**os.environ, "RSMS_BENCH_BODY": str(body), "RSMS_BENCH_KEY": target.key}
        command = [
            "wrk",
            f"-t{threads}",
            f"-c{connections}",
            f"-d{max(1, round(seconds))}s",
            "--timeout",
            "5s",
            "-s",
            str(script),
            f"http://{target.host}:{target.port}{target.path}",
        ]
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=seconds + 30)
    if done.returncode != 0:
        output = done.stderr.strip() or done.stdout.strip()
        raise RuntimeError(f"wrk failed ({done.returncode}): {output}")
    line = next((ln for ln in done.stdout.splitlines() if ln.startswith("RSMS_RESULT ")), None)
    if line is None:
        raise RuntimeError(f"wrk printed no result:\n{done.stdout}")
    result = json.loads(line.removeprefix("RSMS_RESULT "))
    failed = result["non_2xx"] + result["socket_errors"]
    return Throughput(result["requests"] - result["non_2xx"], failed, result["duration_us"] / 1e6)


# --- raw HTTP/1.1 over asyncio -------------------------------------------------------------


class Connection:
    """One keep-alive HTTP/1.1 connection that sends one prepared request at a time."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer

    @classmethod
    async def open(cls, host: str, port: int) -> Connection:
        reader, writer = await asyncio.open_connection(host, port)
        sock = writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return cls(reader, writer)

    async def send(self, request: bytes) -> int:
        """The status code; the body is read and dropped."""
        return (await self.exchange(request))[0]

    async def exchange(self, request: bytes) -> tuple[int, bytes]:
        """The status code and the body."""
        self._writer.write(request)
        head = await self._reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        length = None
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
                break
        if length is None:
            raise RuntimeError("response without Content-Length (chunked bodies are not read)")
        return status, await self._reader.readexactly(length)

    def close(self) -> None:
        self._writer.close()


def _install_fast_loop() -> None:
    # The client must not be the bottleneck: uvloop halves its CPU per request where present.
    with contextlib.suppress(ImportError):
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


async def _closed_loop(target: Target, seconds: float, connections: int) -> tuple[int, int, float]:
    request = target.request_bytes()
    conns = [await Connection.open(target.host, target.port) for _ in range(connections)]
    ok = failed = 0
    stop_at = time.perf_counter() + seconds

    async def drive(conn: Connection) -> None:
        nonlocal ok, failed
        while time.perf_counter() < stop_at:
            try:
                status = await conn.send(request)
            except (OSError, asyncio.IncompleteReadError, RuntimeError):
                failed += 1
                return
            if status == 200:
                ok += 1
            else:
                failed += 1

    started = time.perf_counter()
    await asyncio.gather(*(drive(c) for c in conns))
    elapsed = time.perf_counter() - started
    for conn in conns:
        conn.close()
    return ok, failed, elapsed


def _closed_loop_process(args: tuple[Target, float, int]) -> tuple[int, int, float]:
    _install_fast_loop()
    return asyncio.run(_closed_loop(*args))


def run_python_closed_loop(target: Target, *, seconds: float, connections: int, processes: int) -> Throughput:
    """The fallback without wrk: `processes` clients, `connections` in flight in total."""
    per_process = max(1, connections // processes)
    with multiprocessing.get_context("spawn").Pool(processes) as pool:
        results = pool.map(_closed_loop_process, [(target, seconds, per_process)] * processes)
    return Throughput(
        ok=sum(r[0] for r in results),
        failed=sum(r[1] for r in results),
        seconds=max(r[2] for r in results),
    )


async def _open_loop(target: Target, rate: float, seconds: float, connections: int, grace: float) -> Latency:
    # perf_counter, not loop.time(): uvloop's clock ticks in whole milliseconds.
    clock = time.perf_counter
    request = target.request_bytes()
    idle: asyncio.Queue[Connection] = asyncio.Queue()
    for _ in range(connections):
        idle.put_nowait(await Connection.open(target.host, target.port))
    latencies: list[float] = []
    lags: list[float] = []
    ok = failed = socket_errors = 0

    async def one(scheduled: float) -> None:
        nonlocal ok, failed, socket_errors
        conn = await idle.get()
        try:
            status = await conn.send(request)
        except (OSError, asyncio.IncompleteReadError, RuntimeError):
            failed += 1
            socket_errors += 1
            # Replace the broken connection so the pool keeps its size.
            idle.put_nowait(await Connection.open(target.host, target.port))
            return
        latencies.append(clock() - scheduled)
        idle.put_nowait(conn)
        if status == 200:
            ok += 1
        else:
            failed += 1

    count = round(rate * seconds)
    start = clock() + 0.05
    tasks: dict[asyncio.Task[None], float] = {}
    for index in range(count):
        scheduled = start + index / rate
        delay = scheduled - clock()
        if delay > 0:
            await asyncio.sleep(delay)
        lags.append(max(0.0, clock() - scheduled))
        task = asyncio.create_task(one(scheduled))
        tasks[task] = scheduled
        task.add_done_callback(tasks.pop)
    sent_for = clock() - start
    pending: set[asyncio.Task[None]] = set()
    answered = len(latencies)
    if tasks:
        _, pending = await asyncio.wait(set(tasks), timeout=grace)
        answered = len(latencies)
        given_up = clock()
        # A request still unanswered took at least this long: leaving it out would make the
        # percentiles of an overloaded server look better the more requests it never answered.
        latencies.extend(given_up - tasks[task] for task in pending)
        for task in pending:
            task.cancel()
        failed += len(pending)
    while not idle.empty():
        idle.get_nowait().close()
    ordered = sorted(latencies) or [float("nan")]
    return Latency(
        sent=count,
        ok=ok,
        failed=failed,
        p50_ms=percentile(ordered, 50) * 1000,
        p99_ms=percentile(ordered, 99) * 1000,
        max_ms=ordered[-1] * 1000,
        generator_lag_p99_ms=percentile(sorted(lags), 99) * 1000,
        achieved_rate=count / sent_for if sent_for > 0 else float("nan"),
        p90_ms=percentile(ordered, 90) * 1000,
        answered=answered,
        socket_errors=socket_errors,
        unanswered=len(pending),
        grace_ms=grace * 1000,
    )


def run_open_loop(target: Target, *, rate: float, seconds: float, connections: int, grace: float = 10.0) -> Latency:
    _install_fast_loop()
    return asyncio.run(_open_loop(target, rate, seconds, connections, grace))


def percentile(ordered: list[float], pct: float) -> float:
    """The nearest-rank percentile of values sorted ascending (NaN when there are none):
    the smallest value with at least `pct` % of the values at or below it."""
    if not ordered:
        return float("nan")
    # ceil, not round: round(2.5) is 2, which made the median of five values the second.
    index = min(len(ordered) - 1, max(0, math.ceil(pct * len(ordered) / 100) - 1))
    return ordered[index]
