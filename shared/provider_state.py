"""The provider's health as the dispatcher last saw it, kept in Redis for ingest to read.

The dispatcher's circuit breaker writes it when the provider reports an account-wide
failure and clears it when a send goes through again; ingest answers new live sends with
the matching contract error meanwhile, so clients hear about an outage at once instead of
queueing into it.
"""

from __future__ import annotations

from enum import StrEnum

from shared.errors import ErrorCode

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
