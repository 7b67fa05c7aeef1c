"""The processes of `rsms up`: started in sessions of their own, restarted when they die,
and stopped to the last process when `rsms up` ends, however it ends.

- Each service runs in its own session (process group), so Ctrl-C reaches only `rsms up`,
  which stops the services in order, and a service's own children (ingest's uvicorn
  workers, multiprocessing's resource tracker) are stopped with it: the group is
  signalled, not just the process.
- A service that dies is restarted after a pause that doubles while it keeps dying soon
  after its start (1 s, 2 s, 4 s … 30 s) and starts over once it has run for a minute. A
  service that exits with code 2 (a bad setting: restarting cannot help) stops the gateway.
- Each service gets SIGTERM from the kernel if `rsms up` itself dies, even by SIGKILL
  (PR_SET_PDEATHSIG), so no service outlives it; a service's own children do not get it.
  Belt and braces: a server can outlive that SIGTERM (uvicorn's supervisor waits for its
  workers without a time limit, so one worker stuck in its shutdown keeps them all; the
  server before it was seen to keep its processes after a SIGTERM that came while a
  worker was still starting, under load, in CI), so every service also watches its parent
  (`stop_when_orphaned`) and, orphaned and still running `ORPHAN_GRACE_SECONDS` later,
  kills its own group.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import IO

import click

FIRST_RESTART_DELAY = 1.0
LONGEST_RESTART_DELAY = 30.0
STABLE_AFTER_SECONDS = 60.0
BAD_SETTING_EXIT_CODE = 2
PR_SET_PDEATHSIG = 1


@dataclass
class Service:
    name: str
    args: list[str]
    colour: str
    env: dict[str, str] = field(default_factory=dict, repr=False)
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    started_at: float = 0.0
    restart_delay: float = 0.0
    restart_at: float | None = None
    """When a dead service is due to start again (None: running, or not to restart)."""


class FatalExit(Exception):
    """A service exited in a way restarting cannot mend."""


def _die_with_parent() -> Callable[[], None] | None:
    """A function for the child, between fork and exec: SIGTERM when the parent dies."""
    if not sys.platform.startswith("linux"):
        return None
    prctl = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True).prctl
    signal_number = int(signal.SIGTERM)

    def in_child() -> None:
        prctl(PR_SET_PDEATHSIG, signal_number, 0, 0, 0)

    return in_child


SUPERVISOR_PID_ENV = "_RSMS_SUPERVISOR_PID"
"""Set for each service `rsms up` starts: the pid it must not outlive (not an RSMS_
setting: it is no one's to set)."""
ORPHAN_GRACE_SECONDS = 20.0
"""Time the SIGTERM shutdown gets (a ledger writing its last batch, a dispatcher draining)
before an orphaned service's group is killed."""


def stop_when_orphaned(poll_seconds: float = 1.0, grace_seconds: float = ORPHAN_GRACE_SECONDS) -> None:
    """In a service `rsms up` started: a daemon thread that kills the service's process
    group (its own session: the service and its workers) once `rsms up` is gone and the
    grace period has passed. Nothing is lost by it: what a service has not acknowledged
    stays on the broker."""
    supervisor = os.environ.get(SUPERVISOR_PID_ENV)
    if not supervisor or not supervisor.isdigit():
        return

    def watch() -> None:
        while os.getppid() == int(supervisor):
            time.sleep(poll_seconds)
        time.sleep(grace_seconds)
        os.killpg(os.getpgrp(), signal.SIGKILL)

    threading.Thread(target=watch, name="stop-when-orphaned", daemon=True).start()


def prefixed_lines(fd: int, prefix: bytes, chunk: int = 65_536) -> Iterator[bytes]:
    """What is read from `fd` until its end, as blocks of whole lines, each line behind
    `prefix` (a last line without its newline is given one)."""
    partial = b""
    while data := os.read(fd, chunk):
        lines = (partial + data).split(b"\n")
        partial = lines.pop()
        if lines:
            yield b"".join(prefix + line.rstrip() + b"\n" for line in lines)
    if partial:
        yield prefix + partial.rstrip() + b"\n"


class Supervisor:
    def __init__(self, services: list[Service], env: dict[str, str], stop_seconds: float) -> None:
        self.services = services
        self._env = env
        # The longest any service may take to stop (`ServiceSettings.stop_seconds`): killed
        # sooner, a dispatcher's submits in flight would be held for an operator.
        self._stop_seconds = stop_seconds
        self._width = max(len(s.name) for s in services)
        self._in_child = _die_with_parent()

    def start_all(self) -> None:
        for service in self.services:
            self._start(service)

    def _start(self, service: Service) -> None:
        service.process = subprocess.Popen(
            [sys.executable, "-m", "cli", *service.args],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=self._env | service.env | {SUPERVISOR_PID_ENV: str(os.getpid())},
            start_new_session=True,
            # Between fork and exec: one prctl call through a function resolved beforehand,
            # no Python lock taken, so the usual worry about preexec_fn and threads is moot.
            preexec_fn=self._in_child,
        )
        service.started_at = time.monotonic()
        service.restart_at = None
        assert service.process.stdout is not None
        threading.Thread(target=self._pump, args=(service, service.process.stdout), daemon=True).start()

    def _pump(self, service: Service, stream: IO[bytes]) -> None:
        """Copy the service's lines to our stdout, each behind the service's name. Read
        as chunks and written as one block of whole lines: under load a service logs
        thousands of lines a second, and a read, decode and write per line cost this
        process more CPU than a busy service's own logging."""
        label = f"{service.name:<{self._width}} |"
        prefix = (click.style(label, fg=service.colour) if sys.stdout.isatty() else label).encode() + b" "
        out = sys.stdout.buffer
        for block in prefixed_lines(stream.fileno(), prefix):
            out.write(block)
            out.flush()

    def tend(self) -> None:
        """Restart what died (when its pause is over). Raises `FatalExit` for a bad setting."""
        now = time.monotonic()
        for service in self.services:
            process = service.process
            if process is None or (code := process.poll()) is None:
                continue
            if service.restart_at is None:
                _signal_group(process.pid, signal.SIGKILL)  # what it left behind (workers)
                if code == BAD_SETTING_EXIT_CODE:
                    raise FatalExit(f"{service.name} exited with code {code} (a bad setting); stopping the gateway")
                ran = now - service.started_at
                if ran >= STABLE_AFTER_SECONDS:
                    service.restart_delay = FIRST_RESTART_DELAY
                else:
                    service.restart_delay = min(
                        LONGEST_RESTART_DELAY, max(FIRST_RESTART_DELAY, service.restart_delay * 2)
                    )
                service.restart_at = now + service.restart_delay
                click.secho(
                    f"{service.name} exited with code {code} after {ran:.0f} s; "
                    f"restarting it in {service.restart_delay:g} s",
                    fg="red",
                    err=True,
                )
            elif now >= service.restart_at:
                click.secho(f"restarting {service.name}", fg="yellow", err=True)
                self._start(service)

    def stop_all(self) -> None:
        """SIGTERM to every group, the API first; SIGKILL to what is left after the grace."""
        started = [s.process for s in self.services if s.process is not None]
        for process in reversed(started):
            _signal_group(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + self._stop_seconds
        for service in self.services:
            if service.process is None:
                continue
            try:
                service.process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                click.echo(f"{service.name} did not stop in {self._stop_seconds:g}s; killing it", err=True)
        # Whatever is left of any group, the workers of a leader that already exited too.
        for process in started:
            _signal_group(process.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(5)


def _signal_group(pgid: int, signum: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signum)
