"""A project's webhook receiver, as a customer would write one: a real HTTP server
(aiohttp) that verifies each request with the README's copy-paste snippet, taken from the
README itself, so the documentation and the sender cannot drift apart."""

from __future__ import annotations

import asyncio
import re
import socket
from collections import defaultdict
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Literal

from aiohttp import web

README = Path(__file__).resolve().parents[2] / "README.md"
Behaviour = Literal["ok", "fail", "hang"]
Verify = Callable[[str, Mapping[str, str], bytes], list[dict[str, Any]]]


def readme_verifier() -> Verify:
    """`verify_rsms_webhook` as the README shows it (the Python block that defines it)."""
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.DOTALL)
    [snippet] = [block for block in blocks if "def verify_rsms_webhook" in block]
    namespace: dict[str, Any] = {}
    exec(compile(snippet, "README.md (webhook snippet)", "exec"), namespace)  # noqa: S102 -- our own README
    verify: Verify = namespace["verify_rsms_webhook"]
    return verify


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Receiver:
    """POST /hooks/<project>: verified, then answered as `behaviour[project]` says."""

    def __init__(self, secrets: dict[str, str]) -> None:
        self.secrets = secrets
        self.verify = readme_verifier()
        self.behaviour: dict[str, Behaviour] = {}
        self.batches: dict[str, list[list[dict[str, Any]]]] = defaultdict(list)  # taken (2xx), per request
        self.attempts: dict[str, int] = defaultdict(int)  # verified requests, whatever the answer
        self.rejected: list[str] = []
        self.hanging: dict[str, int] = defaultdict(int)
        self.most_hanging: dict[str, int] = defaultdict(int)
        self.release = asyncio.Event()
        self.port = free_port()
        self._runner: web.AppRunner | None = None

    def url(self, project: str) -> str:
        return f"http://127.0.0.1:{self.port}/hooks/{project}"

    def events(self, project: str) -> list[dict[str, Any]]:
        return [event for batch in self.batches[project] for event in batch]

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/hooks/{project}", self._handle)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        self.release.set()
        if self._runner is not None:
            await self._runner.cleanup()

    async def _handle(self, request: web.Request) -> web.Response:
        project = request.match_info["project"]
        body = await request.read()
        try:
            events = self.verify(self.secrets[project], request.headers, body)
        except (ValueError, KeyError) as error:
            self.rejected.append(f"{project}: {error}")
            return web.Response(status=401)
        self.attempts[project] += 1
        behaviour = self.behaviour.get(project, "ok")
        if behaviour == "fail":
            return web.Response(status=500)
        if behaviour == "hang":
            self.hanging[project] += 1
            self.most_hanging[project] = max(self.most_hanging[project], self.hanging[project])
            try:
                await self.release.wait()
            finally:
                self.hanging[project] -= 1
        self.batches[project].append(events)
        return web.Response(status=204)
