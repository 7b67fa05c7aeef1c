"""The test SMSC (`smsc.js`, on the npm `smpp` package) as a process the tests drive.

`npm ci` runs on first use when `node_modules` is missing (under a lock, so parallel test
workers install once); tests are skipped only when Node itself is not installed.
"""

from __future__ import annotations

import asyncio
import fcntl
import json
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

HERE = Path(__file__).parent


def ensure_installed() -> str:
    node = shutil.which("node")
    npm = shutil.which("npm")
    if node is None or npm is None:
        pytest.skip("Node.js (node and npm) is needed for the test SMSC and is not installed")
    with (HERE / ".install.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (HERE / "node_modules" / "smpp").is_dir():
            subprocess.run(
                [npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=HERE, check=True, timeout=300
            )
    return node


class TestSmsc:
    """One SMSC process: `command(...)` changes its behaviour, `records()` is what it got."""

    __test__ = False

    def __init__(self, port: int, record_file: Path, system_id: str, password: str) -> None:
        self.port = port
        self.record_file = record_file
        self.system_id = system_id
        self.password = password
        self._process: asyncio.subprocess.Process | None = None

    async def start(self) -> TestSmsc:
        node = ensure_installed()
        self.record_file.touch()
        self._process = await asyncio.create_subprocess_exec(
            node,
            str(HERE / "smsc.js"),
            str(self.port),
            str(self.record_file),
            self.system_id,
            self.password,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        line = await asyncio.wait_for(self._read_line(), 30)
        assert line == {"ready": self.port}, line
        return self

    async def command(self, **change: Any) -> None:
        assert self._process is not None and self._process.stdin is not None
        self._process.stdin.write(json.dumps(change).encode() + b"\n")
        await self._process.stdin.drain()
        answer = await asyncio.wait_for(self._read_line(), 10)
        assert "ack" in answer, answer

    def records(self, command: str | None = None) -> list[dict[str, Any]]:
        lines = self.record_file.read_text().splitlines()
        entries = [json.loads(line) for line in lines if line.strip()]
        return [e for e in entries if command is None or e.get("command") == command]

    async def wait_for(self, command: str, count: int, within: float = 20.0, **match: Any) -> list[dict[str, Any]]:
        deadline = time.monotonic() + within
        while True:
            found = [r for r in self.records(command) if all(r.get(k) == v for k, v in match.items())]
            if len(found) >= count or time.monotonic() > deadline:
                return found
            await asyncio.sleep(0.05)

    async def stop(self) -> None:
        if self._process is None:
            return
        if self._process.returncode is None:
            self._process.kill()
        await self._process.wait()

    async def _read_line(self) -> dict[str, Any]:
        assert self._process is not None and self._process.stdout is not None
        line = await self._process.stdout.readline()
        if not line:
            raise RuntimeError("the test SMSC exited")
        result: dict[str, Any] = json.loads(line)
        return result
