"""The provider's health as the dispatcher last saw it, kept in Redis for ingest to read.

The dispatcher's circuit breaker writes it when the provider reports an account-wide
failure and clears it when a send goes through again; ingest answers new live sends with
the matching contract error meanwhile, so clients hear about an outage at once instead of
queueing into it.
"""

from __future__ import annotations

from enum import StrEnum

from shared.errors import ErrorCode
from shared.redis_connection import RedisClient

PROVIDER_STATE_KEY = "rsms:provider:state"


class ProviderState(StrEnum):
    OK = "ok"
    AUTH_ERROR = "auth_error"
    NO_CREDITS = "no_credits"

    @property
    def error_code(self) -> ErrorCode | None:
        return {
            ProviderState.OK: None,
            ProviderState.AUTH_ERROR: ErrorCode.PROVIDER_AUTH_ERROR,
            ProviderState.NO_CREDITS: ErrorCode.PROVIDER_NO_CREDITS,
        }[self]


async def write_provider_state(redis: RedisClient, state: ProviderState, ttl_seconds: int) -> None:
    """Record an account-wide failure (or clear it with `ProviderState.OK`).

    The failure expires unless renewed: a dispatcher that died while its circuit was open
    must not leave ingest refusing sends forever.
    """
    if state is ProviderState.OK:
        await redis.delete(PROVIDER_STATE_KEY)
    else:
        await redis.set(PROVIDER_STATE_KEY, state.value, ex=ttl_seconds)


async def read_provider_state(redis: RedisClient) -> ProviderState:
    raw = await redis.get(PROVIDER_STATE_KEY)
    if raw is None:
        return ProviderState.OK
    return ProviderState(raw.decode() if isinstance(raw, bytes) else raw)
