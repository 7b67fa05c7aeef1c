"""Slow clients against the send API: does a normal client still get quick answers?

Issue 8 found that 1,100 connections trickling one body byte every 10 s took the API down
for everybody, no key needed (the body was read before the key was checked, and the
server's connection permits, 512 a worker then, were all held). This bench starts
`rsms ingest` as an operator would (2 workers, default settings) and measures a normal
client twice in the same run:

1. **baseline**: no slow clients;
2. **under attack**: with `--slow` (2,000) slow connections held open by a second process,
   in four kinds, each trickling one byte every `--trickle` seconds (10), reconnecting at
   once when the server cuts it, and after `--trickle` seconds when it answers:
   - a send without a key, body trickled (answered 401 at once now);
   - a send with a valid key, body trickled (cut by `RSMS_BODY_TIMEOUT_SECONDS`, 408);
   - headers trickled (cut by `RSMS_INGEST_HEADER_TIMEOUT_SECONDS`);
   - a connection that sends nothing at all.

The normal client opens a new connection for every request (a keep-alive connection opened
before the attack would hide the fault: the attack starves *new* connections), sends a
single-recipient send with a valid key at a fixed rate (open loop: latency runs from the
scheduled time, so a stall is charged to every request it delayed), and gives up on a
request after 5 s (counted as failed, at 5 s). Target: p99 under 100 ms under attack.

    .venv/bin/python -m bench.slow_clients [--slow 2000] [--seconds 20] [--rate 20] [--trickle 10]

Stops by itself (about a minute with the defaults) and removes what it created.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing
import os
import resource
import time
from collections import Counter
from dataclasses import dataclass
from multiprocessing.synchronize import Event

from bench.ingest_env import TAG, BenchEnv, free_port

TARGET_P99_MS = 100.0
GIVE_UP_SECONDS = 5.0
KINDS = ("no-key body", "keyed body", "headers", "idle")
BODY = json.dumps({"tag": TAG, "recipients": ["+4790000001"], "message": "Your code is 482913."}).encode()


def raise_open_files_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def send_request(port: int, key: str | None, body: bytes = BODY) -> bytes:
    auth = f"Authorization: Bearer {key}\r\n" if key else ""
    return (
        f"POST /api/v1/sms/send HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n{auth}"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode() + body


# --- the slow clients (a process of their own) ----------------------------------------------


async def _slow_client(kind: str, port: int, key: str, trickle: float, stop: Event, stats: Counter[str]) -> None:
    """One slow connection at a time, for as long as the run lasts."""
    if kind == "headers":
        script = send_request(port, key)  # every byte of it trickled, headers first
        opening = b""
    elif kind == "idle":
        script, opening = b"", b""
    else:
        whole = send_request(port, key if kind == "keyed body" else None, b" " * 1000)
        opening, script = whole[: -len(b" " * 1000)], b" " * 1000
    while not stop.is_set():
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            stats["connect failed"] += 1
            await asyncio.sleep(trickle)
            continue
        stats["opened"] += 1
        stats["open now"] += 1
        answered = False
        try:
            writer.write(opening)
            for index in range(len(script) or 10**9):
                if stop.is_set():
                    break
                if script:
                    writer.write(script[index : index + 1])
                await writer.drain()
                with contextlib.suppress(TimeoutError):
                    answer = await asyncio.wait_for(reader.read(65536), trickle)
                    stats["answered " + answer[9:12].decode() if answer else "closed by server"] += 1
                    answered = bool(answer)
                    break
        except (OSError, ConnectionError):
            stats["closed by server"] += 1
        finally:
            stats["open now"] -= 1
            writer.close()
        # Cut by a timeout: straight back, to hold as many connections as the server lets
        # it. Answered (a 401 comes at once): slowness gains nothing, so it waits.
        await asyncio.sleep(trickle if answered else 0.05)


async def _slow_clients(count: int, port: int, key: str, trickle: float, stop: Event, report: Event) -> None:
    stats: Counter[str] = Counter()
    tasks = []
    for index in range(count):
        kind = KINDS[index % len(KINDS)]
        tasks.append(asyncio.create_task(_slow_client(kind, port, key, trickle, stop, stats)))
        if index % 100 == 99:
            await asyncio.sleep(0.05)  # ramp up over a second or two, as a botnet would
    while not stop.is_set():
        await asyncio.sleep(0.2)
        if report.is_set():
            print("  slow clients: " + ", ".join(f"{name} {value}" for name, value in sorted(stats.items())))
            report.clear()
    await asyncio.gather(*tasks, return_exceptions=True)


def _slow_clients_process(count: int, port: int, key: str, trickle: float, stop: Event, report: Event) -> None:
    raise_open_files_limit()
    asyncio.run(_slow_clients(count, port, key, trickle, stop, report))


# --- the normal client ----------------------------------------------------------------------


@dataclass(frozen=True)
class Latencies:
    sent: int
    ok: int
    failed: int
    p50_ms: float
    p99_ms: float
    max_ms: float


async def _one(port: int, request: bytes, scheduled: float) -> tuple[bool, float]:
    """A new connection, one send, the answer: (200?, seconds since it was scheduled)."""
    try:
        async with asyncio.timeout(GIVE_UP_SECONDS):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            try:
                writer.write(request)
                head = await reader.readuntil(b"\r\n\r\n")
                length = next(
                    int(line.split(b":")[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length")
                )
                await reader.readexactly(length)
            finally:
                writer.close()
        return head[9:12] == b"200", time.perf_counter() - scheduled
    except (TimeoutError, OSError, asyncio.IncompleteReadError, StopIteration):
        return False, GIVE_UP_SECONDS


async def _normal_client(port: int, key: str, rate: float, seconds: float) -> Latencies:
    request = send_request(port, key)
    count = round(rate * seconds)
    start = time.perf_counter() + 0.05
    tasks = []
    for index in range(count):
        scheduled = start + index / rate
        delay = scheduled - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(_one(port, request, scheduled)))
    results = await asyncio.gather(*tasks)
    latencies = sorted(latency for _, latency in results)
    ok = sum(1 for good, _ in results if good)

    def percentile(pct: float) -> float:
        return latencies[min(len(latencies) - 1, max(0, round(pct / 100 * len(latencies)) - 1))] * 1000

    return Latencies(count, ok, count - ok, percentile(50), percentile(99), latencies[-1] * 1000)


# --- the run ---------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--slow", type=int, default=2000, help="slow connections held open (default 2000)")
    parser.add_argument("--seconds", type=float, default=20.0, help="length of each measurement")
    parser.add_argument("--rate", type=float, default=20.0, help="normal sends per second")
    parser.add_argument("--trickle", type=float, default=10.0, help="seconds between a slow client's bytes")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--settle", type=float, default=12.0, help="seconds the attack runs before measuring")
    args = parser.parse_args()
    raise_open_files_limit()
    print(f"load average at start: {' '.join(f'{v:.1f}' for v in os.getloadavg())}")
    with BenchEnv() as env:
        port = free_port()
        gateway = env.gateway(port, args.workers)
        gateway.start()
        try:
            gateway.wait_ready()
            env.wait_topology()
            baseline = asyncio.run(_normal_client(port, env.api_key, args.rate, args.seconds))
            env.purge_queues()
            stop, report = multiprocessing.Event(), multiprocessing.Event()
            attacker = multiprocessing.Process(
                target=_slow_clients_process, args=(args.slow, port, env.api_key, args.trickle, stop, report)
            )
            attacker.start()
            try:
                time.sleep(args.settle)
                report.set()
                attacked = asyncio.run(_normal_client(port, env.api_key, args.rate, args.seconds))
                report.set()
                time.sleep(0.5)
            finally:
                stop.set()
                attacker.join(args.trickle + 15)
                if attacker.is_alive():
                    attacker.kill()
            env.purge_queues()
        finally:
            gateway.stop()
    print(f"load average at end: {' '.join(f'{v:.1f}' for v in os.getloadavg())}\n")
    print(f"normal client: single-recipient sends, a new connection each, {args.rate:g}/s for {args.seconds:g} s")
    print(f"{'':<34} {'sent':>6} {'ok':>6} {'failed':>6} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8}")
    for name, figures in (("baseline (no slow clients)", baseline), (f"with {args.slow:,} slow clients", attacked)):
        print(
            f"{name:<34} {figures.sent:>6} {figures.ok:>6} {figures.failed:>6} "
            f"{figures.p50_ms:>8.1f} {figures.p99_ms:>8.1f} {figures.max_ms:>8.1f}"
        )
    verdict = "PASS" if attacked.failed == 0 and attacked.p99_ms < TARGET_P99_MS else "MISS"
    print(f"\ntarget: p99 < {TARGET_P99_MS:g} ms with slow clients, nothing failed: {verdict}")


if __name__ == "__main__":
    main()
