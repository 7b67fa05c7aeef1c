"""The faults the simulator injects, switchable at run time through its admin API."""

from __future__ import annotations

import msgspec


class Faults(msgspec.Struct, kw_only=True):
    latency_ms: float = 0.0
    """Added to every send request, after the messages are recorded (a slow answer)."""
    error_rate: float = 0.0
    """Share of send requests answered 503 without recording anything."""
    timeout_rate: float = 0.0
    """Share of send requests that record the messages, then hang past the client's timeout."""
    recipient_error_rate: float = 0.0
    """Share of recipients in an answered request reported `failed` (transient) and not kept."""
    auth_failure: bool = False
    """Every request is answered 401, as if the gateway's token were revoked."""
    no_credits: bool = False
    """Every request is answered 402, as if the account were empty."""
    blocked: list[str] = msgspec.field(default_factory=list)
    """Numbers reported `blocked` (opted out, barred)."""
    invalid: list[str] = msgspec.field(default_factory=list)
    """Numbers reported `invalid` (not a reachable subscriber)."""
    receipt_failure_rate: float = 0.0
    """Share of delivery receipts reporting the message undelivered."""
    deduplicate: bool = True
    """False: a provider without idempotency (SMPP, many HTTP APIs): a reference seen again
    is delivered again, as a second SMS, and counted as `duplicate_deliveries`."""


class FaultsUpdate(msgspec.Struct, kw_only=True, omit_defaults=True):
    """A partial update: only the fields given change."""

    latency_ms: float | None = None
    error_rate: float | None = None
    timeout_rate: float | None = None
    recipient_error_rate: float | None = None
    auth_failure: bool | None = None
    no_credits: bool | None = None
    blocked: list[str] | None = None
    invalid: list[str] | None = None
    receipt_failure_rate: float | None = None
    deduplicate: bool | None = None

    def apply_to(self, faults: Faults) -> Faults:
        changes = {f: getattr(self, f) for f in self.__struct_fields__ if getattr(self, f) is not None}
        return msgspec.structs.replace(faults, **changes)
