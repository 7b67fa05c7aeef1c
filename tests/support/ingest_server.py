"""The ingest API as `rsms ingest` serves it: uvicorn worker processes on a real port.

For what only the real server shows (raw HTTP framing, slow clients, header lines as sent,
worker deaths); the in-process test client covers the rest.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from bench.ingest_env import server_workers

PROJECT_ROOT = Path(__file__).resolve().parents[2]


@dataclass
class ServedIngest:
    process: subprocess.Popen[bytes]
    port: int
    ops_port: int
    log_path: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ops_url(self) -> str:
        """/metrics (all workers) and /health/*: the operators' port, not the API's."""
        return f"http://127.0.0.1:{self.ops_port}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def worker_pids(self) -> list[int]:
        """The server's workers: its children started by multiprocessing's spawn (not its
        resource tracker, a child too)."""
        return server_workers(self.process.pid)


def read_answer(sock: socket.socket) -> bytes:
    """One whole answer (head and Content-Length body) from `sock`, however the server
    split it into writes."""
    answer = b""
    while b"\r\n\r\n" not in answer:
        chunk = sock.recv(65536)
        if not chunk:
            return answer
        answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    length = next(
        (int(line.split(b":", 1)[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:")),
        0,
    )
    while len(body) < length and (chunk := sock.recv(65536)):
        body += chunk
    return head + b"\r\n\r\n" + body


def raw_request(port: int, data: bytes, *, timeout: float = 5.0) -> bytes:
    """Send bytes as they are (no client library tidying them up); the whole answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(data)
        sock.shutdown(socket.SHUT_WR)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def wait_until_live(url: str, process: subprocess.Popen[bytes], log_path: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"ingest exited with {process.returncode}:\n{log_path.read_text()[-4000:]}")
        try:
            if httpx.get(f"{url}/health/live", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"ingest did not answer within {timeout} s:\n{log_path.read_text()[-4000:]}")


@contextmanager
def served_ingest(env: dict[str, str], port: int, log_path: Path, ops_port: int) -> Iterator[ServedIngest]:
    """`rsms ingest` with `env` (RSMS_* settings) on `port` (its ops server on `ops_port`),
    stopped (the whole process group) afterwards."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("RSMS_", "PROMETHEUS_"))}
    clean.update(env, RSMS_INGEST_PORT=str(port), RSMS_INGEST_OPS_PORT=str(ops_port), PYTHONPATH=str(PROJECT_ROOT))
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "cli", "ingest"],
            cwd=PROJECT_ROOT,
            env=clean,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    served = ServedIngest(process, port, ops_port, log_path)
    try:
        wait_until_live(served.url, process, log_path)
        yield served
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        with contextlib.suppress(ProcessLookupError):  # workers left behind by a killed server
            os.killpg(process.pid, signal.SIGKILL)
