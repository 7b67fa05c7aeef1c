"""`rsms up` restarts a service that died, refuses to share its ports with a second
gateway, and leaves no process behind when it ends, even when it is killed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from cli.supervisor import prefixed_lines
from tests.support.rsms_up import PORT_NAMES, Gateway, alive, descendants, eventually, rsms_up_runner

pytestmark = pytest.mark.slow


@pytest.fixture
def ports(free_port: Callable[[], int]) -> dict[str, int]:
    return {name: free_port() for name in PORT_NAMES}


@pytest.fixture
def start_up(tmp_path: Path, amqp_url: str, redis_url: str, ports: dict[str, int]) -> Iterator[Callable[[], Gateway]]:
    with rsms_up_runner(tmp_path, amqp_url, redis_url, ports) as start:
        yield start


def ready(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/health/ready", timeout=2).status_code == 200
    except httpx.TransportError:
        return False


def test_a_killed_service_comes_back_a_second_gateway_is_refused_and_nothing_survives(
    start_up: Callable[[], Gateway], ports: dict[str, int]
) -> None:
    up = start_up()
    up.wait_for(r"RSMS Gateway is up")
    before = descendants(up.process.pid)

    # kill -9 of the API's server process: its workers (left serving the port) are stopped
    # with it and the API comes back.
    ingest = next(pid for pid in before if os.getpgid(pid) == pid and b" ingest" in _cmdline(pid))
    orphans = descendants(ingest)
    assert orphans, "uvicorn's workers"
    os.kill(ingest, signal.SIGKILL)
    up.wait_for(r"ingest exited with code -9 .*restarting it in 1 s")
    up.wait_for(r"restarting ingest")
    eventually(lambda: ready(ports["ingest"]), "the API to answer again")
    assert not any(alive(pid) for pid in orphans)

    # A second gateway on the same ports: refused, in one line, naming what holds the port.
    second = start_up()
    assert second.process.wait(60) == 2
    refusal = "\n".join(second.lines)
    assert "is already in use by pid" in refusal and "RSMS_" in refusal, refusal
    assert ready(ports["ingest"])

    # Ctrl-C: every process of every service ends, the restarted ones too.
    everything = before | descendants(up.process.pid)
    up.process.send_signal(signal.SIGINT)
    assert up.process.wait(60) == 0
    assert not [pid for pid in everything if alive(pid)]
    # And no service printed a traceback on its way out (ingest's ops loop, left open for
    # the garbage collector, once printed "Exception ignored in: BaseEventLoop.__del__"
    # when `rsms up` stopped it from a terminal).
    assert "Traceback" not in "\n".join(up.lines), "\n".join(up.lines)[-3000:]


def test_no_service_outlives_rsms_up_killed_with_sigkill(start_up: Callable[[], Gateway]) -> None:
    up = start_up()
    up.wait_for(r"RSMS Gateway is up")
    services = descendants(up.process.pid)
    assert len(services) >= 6  # simulator, ledger, dispatcher, ingest and its two workers
    up.process.kill()
    up.process.wait()
    try:
        eventually(lambda: not [pid for pid in services if alive(pid)], "every service to stop", timeout=60)
    except AssertionError:
        left = {pid: _cmdline(pid).decode(errors="replace") for pid in services if alive(pid)}
        raise AssertionError(f"still running 60 s after rsms up was killed: {left}") from None


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
    except OSError:
        return b""


def test_a_service_that_ignores_its_sigterm_is_killed_once_orphaned(tmp_path: Path) -> None:
    # The stand-in for `rsms up` starts a "service" that ignores SIGTERM (as good as a server
    # whose worker hangs in its shutdown: uvicorn's supervisor waits for it), then dies; the
    # service's watchdog kills its group.
    service = (
        "import signal, time\n"
        "from cli.supervisor import stop_when_orphaned\n"
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "stop_when_orphaned(poll_seconds=0.1, grace_seconds=0.5)\n"
        "time.sleep(120)\n"
    )
    parent = (
        "import os, subprocess, sys\n"
        "from cli.supervisor import SUPERVISOR_PID_ENV\n"
        f"child = subprocess.Popen([sys.executable, '-c', {service!r}], start_new_session=True,\n"
        "    env={**os.environ, SUPERVISOR_PID_ENV: str(os.getpid())})\n"
        "print(child.pid, flush=True)\n"
        "os._exit(0)\n"
    )
    done = subprocess.run([sys.executable, "-c", parent], capture_output=True, text=True, timeout=60, check=True)
    child = int(done.stdout.strip())
    eventually(lambda: not alive(child), "the orphaned service to be killed", timeout=30)


def test_service_output_is_copied_as_whole_prefixed_lines() -> None:
    read_end, write_end = os.pipe()
    # A line split across writes, a blank line, bytes that are not UTF-8, a last line
    # without its newline: every line arrives whole, once, behind the prefix.
    for part in (b"first\nsec", b"ond\r\n\n", b"\xff bad bytes\n", b"last"):
        os.write(write_end, part)
    os.close(write_end)
    blocks = list(prefixed_lines(read_end, b"svc | "))
    os.close(read_end)
    assert b"".join(blocks) == b"svc | first\nsvc | second\nsvc | \nsvc | \xff bad bytes\nsvc | last\n"
    assert all(block.endswith(b"\n") for block in blocks)
