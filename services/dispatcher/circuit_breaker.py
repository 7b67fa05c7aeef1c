"""Stops sending while the provider refuses the whole account, and resumes by itself.

Tripped by a `ProviderAccountError`: the dispatcher stops consuming (jobs stay on the
queue, no attempt is spent), records the provider's state in Redis for ingest, and
probes the provider's account every `probe_interval` seconds. The first good probe
clears the state and consumption resumes.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

from redis.exceptions import RedisError

from services.dispatcher.job_consumer import JobConsumer
from services.dispatcher.provider import Provider
from shared.log import get_logger
from shared.provider_state import ProviderState, write_provider_state
from shared.redis_connection import RedisClient

log = get_logger(__name__)


class CircuitBreaker:
    def __init__(
        self,
        provider: Provider,
        redis: RedisClient,
        gate: JobConsumer,
        probe_interval_seconds: float,
        state_ttl_seconds: int,
        on_change: Callable[[ProviderState], None] = lambda state: None,
    ) -> None:
        self._provider = provider
        self._redis = redis
        self._gate = gate
        self._probe_interval = probe_interval_seconds
        self._state_ttl = state_ttl_seconds
        self._on_change = on_change
        self._recovery: asyncio.Task[None] | None = None
        self.state = ProviderState.OK

    @property
    def is_open(self) -> bool:
        return self.state is not ProviderState.OK

    def trip(self, state: ProviderState) -> None:
        if self.is_open:
            return
        log.warning("circuit opened: provider refuses the account", provider_state=state.value)
        self._set(state)
        self._recovery = asyncio.create_task(self._recover())

    async def close(self) -> None:
        if self._recovery is not None:
            self._recovery.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._recovery

    async def _recover(self) -> None:
        await self._retrying(self._gate.pause)
        await self._retrying(self._record_state)
        while True:
            await asyncio.sleep(self._probe_interval)
            probed = await self._provider.account_state()
            if probed is ProviderState.OK:
                break
            self._set(probed)
            await self._retrying(self._record_state)
        self._set(ProviderState.OK)
        await self._retrying(self._record_state)
        await self._retrying(self._gate.resume)
        log.info("circuit closed: provider accepts sends again")

    async def _record_state(self) -> None:
        await write_provider_state(self._redis, self.state, self._state_ttl)

    def _set(self, state: ProviderState) -> None:
        self.state = state
        self._on_change(state)

    async def _retrying(self, step: Callable[[], Awaitable[None]]) -> None:
        """Redis or RabbitMQ may be away too; the circuit must still get to its next state."""
        while True:
            try:
                await step()
                return
            except (RedisError, ConnectionError, RuntimeError) as exc:
                log.warning("circuit step failed, trying again", error=type(exc).__name__)
                await asyncio.sleep(self._probe_interval)
