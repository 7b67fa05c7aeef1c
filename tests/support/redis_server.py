"""A `redis-server` of a test's (or a benchmark's) own, which it may kill and start again.

For the tests of what happens when Redis goes away: with its data (AOF, as the README
runs it) or empty (no persistence, a lost disk); and so that nothing the suite or the
benchmarks do touches a Redis holding somebody else's data.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import time
from pathlib import Path

import redis


class RedisServer:
    def __init__(self, port: int, data_dir: Path, *, appendonly: bool) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("`redis-server` is not on PATH (it is installed wherever Redis is)")
        self.port = port
        self.url = f"redis://127.0.0.1:{port}/0"
        self._binary = binary
        self._data_dir = data_dir
        self._appendonly = appendonly
        self._process: subprocess.Popen[bytes] | None = None
        data_dir.mkdir(parents=True, exist_ok=True)

    def start(self) -> RedisServer:
        persistence = (
            ["--appendonly", "yes", "--save", ""] if self._appendonly else ["--appendonly", "no", "--save", ""]
        )
        self._process = subprocess.Popen(
            [self._binary, "--bind", "127.0.0.1", "--port", str(self.port), "--dir", str(self._data_dir), *persistence],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        client = redis.Redis(port=self.port)
        try:
            for _ in range(200):
                if self._process.poll() is not None:
                    raise RuntimeError(f"redis-server on port {self.port} exited with {self._process.returncode}")
                try:
                    client.ping()
                    return self
                except redis.ConnectionError:
                    time.sleep(0.05)
        finally:
            client.close()
        raise RuntimeError(f"redis-server on port {self.port} did not answer")

    @property
    def pid(self) -> int | None:
        """The running server's process id (benchmarks count its CPU)."""
        return self._process.pid if self._process is not None and self._process.poll() is None else None

    def kill(self) -> None:
        """kill -9: no shutdown save, whatever the persistence."""
        if self._process is not None and self._process.poll() is None:
            self._process.send_signal(signal.SIGKILL)
            self._process.wait(10)

    def restart_empty(self) -> None:
        """Killed, its data thrown away, started again: a Redis that lost everything."""
        self.kill()
        shutil.rmtree(self._data_dir)
        self._data_dir.mkdir()
        self.start()

    def restart(self) -> None:
        """Killed and started again on its own data."""
        self.kill()
        self.start()

    def stop(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()
