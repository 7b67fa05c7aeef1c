"""What the status page shows, gathered when it is opened: each service's health, the
provider circuit, queue depths and dead letters, and live traffic per minute.

The ledger hosts the page because it already holds what the page needs most (the
per-minute counts are ClickHouse's); the rest it asks like any operator would: the other
services' `/health/ready` on their ops ports, the provider state in Redis
(`shared/provider_state.py`), queue depths from RabbitMQ. Every source that does not
answer shows as unknown instead of failing the page.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import httpx
from faststream.rabbit import RabbitBroker, RabbitQueue
from redis.exceptions import RedisError

from services.ledger.clickhouse import StorageUnavailable
from services.ledger.reads import LedgerReader
from shared.provider_state import read_provider_state
from shared.queue_depths import queue_depth
from shared.redis_connection import RedisClient
from shared.topology import (
    DEAD_LETTER_QUEUE,
    DISPATCH_QUEUE,
    LEDGER_ACCEPTED_QUEUE,
    LEDGER_DEAD_LETTER_QUEUE,
    LEDGER_OUTCOMES_QUEUE,
    LEDGER_RECEIPTS_QUEUE,
    RECEIPTS_UNMATCHED_QUEUE,
)

HealthState = Literal["ready", "not ready", "unreachable"]
CHART_MINUTES = 60
HEALTH_TIMEOUT_SECONDS = 2.0


@dataclass(frozen=True)
class WatchedQueue:
    queue: RabbitQueue
    what: str
    dead_letters: bool = False


WATCHED_QUEUES: tuple[WatchedQueue, ...] = (
    WatchedQueue(DISPATCH_QUEUE, "jobs waiting for a dispatcher"),
    WatchedQueue(DEAD_LETTER_QUEUE, "dead letters: given up (rsms dlq)", dead_letters=True),
    WatchedQueue(LEDGER_ACCEPTED_QUEUE, "accepted requests waiting for the ledger"),
    WatchedQueue(LEDGER_OUTCOMES_QUEUE, "outcomes waiting for the ledger"),
    WatchedQueue(LEDGER_RECEIPTS_QUEUE, "delivery receipts waiting for the ledger"),
    WatchedQueue(LEDGER_DEAD_LETTER_QUEUE, "events the ledger could not record", dead_letters=True),
    WatchedQueue(RECEIPTS_UNMATCHED_QUEUE, "receipts matched to no message (rsms receipts)", dead_letters=True),
)


@dataclass(frozen=True)
class ServiceHealth:
    name: str
    state: HealthState
    url: str


@dataclass(frozen=True)
class QueueDepth:
    name: str
    what: str
    depth: int | None
    dead_letters: bool


@dataclass(frozen=True)
class MinuteCounts:
    minute: datetime
    accepted: int
    sent: int
    failed: int


@dataclass(frozen=True)
class StatusSnapshot:
    generated_at: datetime
    services: list[ServiceHealth]
    provider: str
    """ok, auth_error, no_credits (the circuit is open), or unknown (Redis did not answer)."""
    queues: list[QueueDepth]
    traffic: list[MinuteCounts] | None
    """The last CHART_MINUTES minutes, oldest first; None when ClickHouse did not answer."""

    def as_json(self) -> dict[str, Any]:
        return {
            "generatedAt": self.generated_at.isoformat(),
            "services": [{"name": s.name, "state": s.state, "url": s.url} for s in self.services],
            "provider": self.provider,
            "queues": [
                {"name": q.name, "what": q.what, "depth": q.depth, "deadLetters": q.dead_letters} for q in self.queues
            ],
            "traffic": None
            if self.traffic is None
            else [
                {"minute": m.minute.isoformat(), "accepted": m.accepted, "sent": m.sent, "failed": m.failed}
                for m in self.traffic
            ],
        }


def minute_series(counts: Mapping[datetime, tuple[int, int, int]], now: datetime) -> list[MinuteCounts]:
    """Every minute of the last hour up to `now`'s, oldest first, zero where nothing happened."""
    last = now.astimezone(UTC).replace(second=0, microsecond=0)
    minutes = [last - timedelta(minutes=CHART_MINUTES - 1 - i) for i in range(CHART_MINUTES)]
    return [MinuteCounts(m, *counts.get(m, (0, 0, 0))) for m in minutes]


class StatusSources:
    """Asks every source at once; the slowest answer (or timeout) bounds the page."""

    def __init__(
        self,
        *,
        services: Mapping[str, str],
        own_readiness: Callable[[], Awaitable[bool]],
        reader: Callable[[], LedgerReader | None],
        broker: RabbitBroker,
        redis: RedisClient,
    ) -> None:
        self._services = dict(services)
        self._own_readiness = own_readiness
        self._reader = reader
        self._broker = broker
        self._redis = redis

    async def snapshot(self) -> StatusSnapshot:
        now = datetime.now(UTC)
        ledger, others, provider, queues, traffic = await asyncio.gather(
            self._own_readiness(),
            asyncio.gather(*(_health(name, url) for name, url in self._services.items())),
            self._provider(),
            asyncio.gather(*(self._depth(watched) for watched in WATCHED_QUEUES)),
            self._traffic(now),
        )
        own = ServiceHealth("ledger", "ready" if ledger else "not ready", "this process")
        return StatusSnapshot(now, [*others, own], provider, list(queues), traffic)

    async def _provider(self) -> str:
        try:
            return (await read_provider_state(self._redis)).value
        except (RedisError, OSError, ValueError):
            return "unknown"

    async def _depth(self, watched: WatchedQueue) -> QueueDepth:
        depth = await queue_depth(self._broker, watched.queue) if self._broker.running else None
        return QueueDepth(watched.queue.name, watched.what, depth, watched.dead_letters)

    async def _traffic(self, now: datetime) -> list[MinuteCounts] | None:
        reader = self._reader()
        if reader is None:
            return None
        since = now.replace(second=0, microsecond=0) - timedelta(minutes=CHART_MINUTES - 1)
        try:
            counts = await asyncio.to_thread(reader.traffic_per_minute, since)
        except StorageUnavailable:
            return None
        return minute_series(counts, now)


async def _health(name: str, url: str) -> ServiceHealth:
    try:
        async with httpx.AsyncClient(timeout=HEALTH_TIMEOUT_SECONDS) as client:
            answer = await client.get(url.rstrip("/") + "/health/ready")
    except httpx.HTTPError:
        return ServiceHealth(name, "unreachable", url)
    return ServiceHealth(name, "ready" if answer.status_code == 200 else "not ready", url)
