"""`rsms up` as a user runs it, for the tests of the whole gateway and its supervision."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

PROJECT_ROOT = Path(__file__).resolve().parents[2]
PORT_NAMES = ("ingest", "ingest_ops", "dispatcher", "ledger", "sim", "webhooks")


class Gateway:
    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.process = process
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line.rstrip())

    def wait_for(self, pattern: str, timeout: float = 90) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in self.lines:
                if match := re.search(pattern, line):
                    return match
            if self.process.poll() is not None:
                break
            time.sleep(0.2)
        raise AssertionError(f"no line matching {pattern!r}; output:\n" + "\n".join(self.lines[-60:]))


def eventually(check: Callable[[], Any], what: str, timeout: float = 60) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.3)


def descendants(pid: int) -> set[int]:
    """Every process below `pid` (Linux /proc), at this moment."""
    found: set[int] = set()
    pending = [pid]
    while pending:
        parent = pending.pop()
        try:
            children = Path(f"/proc/{parent}/task/{parent}/children").read_text().split()
        except OSError:
            continue
        for child in map(int, children):
            if child not in found:
                found.add(child)
                pending.append(child)
    return found


def alive(pid: int) -> bool:
    """Running (a zombie waiting for its parent to reap it is not)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@contextmanager
def rsms_up_runner(
    directory: Path, amqp_url: str, redis_url: str, ports: dict[str, int], extra_env: dict[str, str] | None = None
) -> Iterator[Callable[..., Gateway]]:
    """Starts `rsms up` (again, if asked) from one directory, as a user would; whatever is
    still running at the end is interrupted, then killed."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RSMS_")}
    env.update(
        RSMS_AMQP_URL=amqp_url,
        RSMS_REDIS_URL=redis_url,
        RSMS_INGEST_PORT=str(ports["ingest"]),
        RSMS_INGEST_OPS_PORT=str(ports["ingest_ops"]),
        RSMS_DISPATCHER_HTTP_PORT=str(ports["dispatcher"]),
        RSMS_LEDGER_HTTP_PORT=str(ports["ledger"]),
        RSMS_PROVIDER_SIM_PORT=str(ports["sim"]),
        RSMS_WEBHOOKS_HTTP_PORT=str(ports["webhooks"]),
        RSMS_PROVIDER_URL=f"http://127.0.0.1:{ports['sim']}",
        RSMS_LEDGER_BATCH_SECONDS="0.2",
        RSMS_PRICES_PER_SEGMENT='{"SE": "0.67"}',
        PYTHONPATH=str(PROJECT_ROOT),
    )
    env.update(extra_env or {})
    started: list[subprocess.Popen[str]] = []

    def start(*args: str) -> Gateway:
        # Like a new user: run from a directory of its own, so var/ (accounts, chDB) is fresh.
        process = subprocess.Popen(
            [sys.executable, "-m", "cli", "up", *args],
            cwd=directory,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        started.append(process)
        return Gateway(process)

    try:
        yield start
    finally:
        for process in started:
            if process.poll() is None:
                process.send_signal(signal.SIGINT)
                try:
                    process.wait(40)
                except subprocess.TimeoutExpired:
                    process.kill()
