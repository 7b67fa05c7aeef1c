"""Delivery receipts from the simulated network: each accepted message is reported back to
the callback URL its send request named, after a delay, as delivered or (a configurable
share: `RSMS_PROVIDER_SIM_RECEIPT_FAILURE_RATE`, or the `receipt_failure_rate` fault at
run time) undelivered, the way real providers push status callbacks.

Receipts due together go in one POST per callback URL. One the gateway did not take
(not 200, unreachable) is sent again a second later, up to `MAX_ATTEMPTS` times.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import httpx
import msgspec

from services.provider_sim.wire import Callback, ReceiptBody, ReceiptsCallback

MAX_BATCH = 1_000
MAX_ATTEMPTS = 60
RETRY_SECONDS = 1.0
TICK_SECONDS = 0.05
FAILURE_ERROR = "001"  # like an SMPP receipt's err: for "absent subscriber"


@dataclass(slots=True)
class _Due:
    at: float
    callback: Callback
    receipt: ReceiptBody
    attempts: int = 0


@dataclass
class ReceiptReporter:
    delay_seconds: float
    counters: Counter[str]
    rng: random.Random
    _due: list[_Due] = field(default_factory=list)
    _task: asyncio.Task[None] | None = None
    _client: httpx.AsyncClient | None = None

    def report(self, callback: Callback, provider_id: str, failure_rate: float) -> None:
        """Schedules the receipt of one accepted message: undelivered at `failure_rate`."""
        loop = asyncio.get_running_loop()
        failed = bool(failure_rate) and self.rng.random() < failure_rate
        done_at = datetime.now(UTC) + timedelta(seconds=self.delay_seconds)
        receipt = ReceiptBody(
            id=provider_id,
            status="undelivered" if failed else "delivered",
            error=FAILURE_ERROR if failed else None,
            done_at=done_at.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        )
        self._due.append(_Due(loop.time() + self.delay_seconds, callback, receipt))

    def start(self) -> None:
        self._client = httpx.AsyncClient(timeout=10.0)
        self._task = asyncio.create_task(self._run(), name="sim-receipts")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._client is not None:
            await self._client.aclose()

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(TICK_SECONDS)
            now = loop.time()
            due = [d for d in self._due if d.at <= now]
            if not due:
                continue
            self._due = [d for d in self._due if d.at > now]
            groups: dict[tuple[str, str], list[_Due]] = {}
            for item in due:
                groups.setdefault((item.callback.url, item.callback.token), []).append(item)
            posts = [
                self._post(url, token, items[start : start + MAX_BATCH])
                for (url, token), items in groups.items()
                for start in range(0, len(items), MAX_BATCH)
            ]
            await asyncio.gather(*posts)

    async def _post(self, url: str, token: str, items: list[_Due]) -> None:
        assert self._client is not None
        body = msgspec.json.encode(ReceiptsCallback([item.receipt for item in items]))
        try:
            response = await self._client.post(
                url, content=body, headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
            )
            taken = response.status_code == 200
        except httpx.HTTPError:
            taken = False
        if taken:
            for item in items:
                self.counters[f"receipts_{item.receipt.status}"] += 1
            return
        self.counters["receipt_callbacks_failed"] += 1
        retry_at = asyncio.get_running_loop().time() + RETRY_SECONDS
        for item in items:
            item.attempts += 1
            if item.attempts >= MAX_ATTEMPTS:
                self.counters["receipts_given_up"] += 1
                continue
            item.at = retry_at
            self._due.append(item)
