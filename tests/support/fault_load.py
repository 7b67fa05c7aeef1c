"""Load that counts what a fault did: a client that retries a refused send with its
Idempotency-Key until it is accepted, a watch on the provider simulator's deliveries, and
the ledger read with `rsms sql`. Used by the cluster tests."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import httpx

from services.dispatcher.job_dispatcher import idempotency_reference
from tests.support.rsms_up import PROJECT_ROOT

SIM_ADMIN = {"Authorization": "Bearer sim-token"}


@dataclass
class Load:
    """A thread sending one request after another (`interval` apart); each request retried
    (same Idempotency-Key) until accepted, even while stopping. Every recipient is new."""

    api: str
    key: str
    tag: str = "load"
    recipients_per_request: int = 1
    interval: float = 0.0
    accepted: dict[str, tuple[list[str], float]] = field(default_factory=dict)  # message id → recipients, when
    refused: Counter[str] = field(default_factory=Counter)  # status code (or "no answer") → times
    stop: threading.Event = field(default_factory=threading.Event)
    _numbers: itertools.count[int] = field(default_factory=itertools.count)
    _thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self.run, daemon=True)
        self._thread.start()

    def finish(self, timeout: float = 120) -> None:
        """Stops sending new requests; waits for the one under way to be accepted."""
        self.stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def run(self) -> None:
        with httpx.Client(timeout=15) as client:
            while not self.stop.is_set():
                recipients = [f"+479{next(self._numbers):07d}" for _ in range(self.recipients_per_request)]
                self._send(client, recipients)
                if self.interval:
                    time.sleep(self.interval)

    def _send(self, client: httpx.Client, recipients: list[str]) -> None:
        headers = {"Authorization": f"Bearer {self.key}", "Idempotency-Key": uuid.uuid4().hex}
        body = {"tag": self.tag, "recipients": recipients, "message": "Fault test"}
        while True:
            try:
                response = client.post(f"{self.api}/api/v1/sms/send", headers=headers, json=body)
            except httpx.TransportError:
                response = None
            if response is not None and response.status_code == 200:
                self.accepted[response.json()["data"]["messageId"]] = (recipients, time.monotonic())
                return
            self.refused[str(response.status_code) if response is not None else "no answer"] += 1
            time.sleep(0.5)

    def expected(self) -> dict[str, str]:
        """The provider references of every accepted recipient."""
        return {
            idempotency_reference(uuid.UUID(message_id), recipient): recipient
            for message_id, (recipients, _) in self.accepted.items()
            for recipient in recipients
        }


@dataclass
class DeliveryWatch:
    """Polls the simulator's delivered count, to see when sending paused and resumed."""

    sim: str
    samples: list[tuple[float, int]] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        with httpx.Client(timeout=5) as client:
            while not self.stop.is_set():
                try:
                    stats = client.get(f"{self.sim}/admin/stats", headers=SIM_ADMIN).json()
                    self.samples.append((time.monotonic(), int(stats.get("delivered", 0))))
                except httpx.HTTPError:
                    pass
                time.sleep(0.2)


def delivered_references(sim: str) -> Counter[str]:
    """How often the simulator got each provider reference (its deduplication off)."""
    messages = httpx.get(f"{sim}/admin/messages", headers=SIM_ADMIN, timeout=60).json()
    return Counter(m["reference"] for m in messages)


def longest_pause_after(times: list[float], since: float, until: float) -> float:
    """The longest interval without an event between `since` and `until` (seconds)."""
    edges = [since, *sorted(t for t in times if since < t < until), until]
    return max(later - earlier for earlier, later in itertools.pairwise(edges))


def delivery_times(samples: list[tuple[float, int]]) -> list[float]:
    """When the delivered count went up."""
    return [t for (t, n), (_, before) in zip(samples[1:], samples, strict=False) if n > before]


def rsms_sql(amqp_url: str, statement: str) -> list[dict[str, Any]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RSMS_")}
    env.update(RSMS_AMQP_URL=amqp_url, PYTHONPATH=str(PROJECT_ROOT))
    done = subprocess.run(
        [sys.executable, "-m", "cli", "sql", "--json", "--limit", "100000", statement],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    if done.returncode != 0:
        raise RuntimeError(done.stderr)
    rows: list[dict[str, Any]] = json.loads(done.stdout)["rows"]
    return rows


def ready(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/health/ready", timeout=3).status_code == 200
    except httpx.HTTPError:
        return False
