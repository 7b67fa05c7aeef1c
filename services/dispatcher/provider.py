"""What the dispatcher needs from an SMS provider, whatever its API looks like.

A provider takes batches (one sender, one text, many recipients, each with the
gateway's idempotency reference) and answers per recipient. Account-wide failures
(authentication, no credits) are raised, not answered per recipient: they say nothing
about the recipients and everything about whether to keep sending.

Implementations: `HttpProvider` (the simulator's API; the model for a real provider's
adapter), `TestTrafficProvider` (sk_test_ jobs: marked sent without a call) and
`BatchingProvider` (merges concurrent sends into fewer requests in front of another).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

from shared.provider_state import ProviderState


class DeliveryStatus(StrEnum):
    SENT = "sent"
    TRANSIENT = "transient"
    """Worth trying again later: a 5xx, a timeout, a per-recipient temporary failure."""
    BLOCKED = "blocked"
    """Permanent: the provider refuses this number (opted out, barred)."""
    INVALID = "invalid"
    """Permanent: not a reachable number."""
    UNKNOWN = "unknown"
    """The send may or may not have reached the carrier (a bind dropped mid-window, a
    response that never came): never resent blindly where the provider cannot deduplicate
    (`Provider.resends_are_safe`); the dispatcher resolves or holds it for an operator."""


@dataclass(frozen=True, slots=True)
class Delivery:
    status: DeliveryStatus
    provider_reference: str | None = None
    detail: str | None = None
    """Why it failed, for operators: never a number or a message text."""
    carrier_ids: tuple[str, ...] = ()
    """The carrier's message id of each part sent, in order, where receipts will name them
    (SMPP: each submit_sm_resp's message_id). Empty where the carrier gives none."""


@dataclass(frozen=True, slots=True)
class OutboundBatch:
    sender: str
    text: str
    recipients: Sequence[str]
    references: Sequence[str]
    """One idempotency reference per recipient, stable across retries and redeliveries."""


class ProviderAccountError(Exception):
    """The provider refuses every send on this account: stop sending until it recovers."""

    def __init__(self, state: ProviderState, detail: str) -> None:
        super().__init__(f"{state.value}: {detail}")
        self.state = state
        self.detail = detail


class Provider(Protocol):
    resends_are_safe: bool
    """True where the provider deduplicates by the gateway's reference (the simulator's
    HTTP API does), so a recipient whose outcome is unknown can be sent again; False for
    SMPP, where a second submit_sm is a second SMS."""

    async def send(self, batches: Sequence[OutboundBatch]) -> list[list[Delivery]]:
        """One list of deliveries per batch, aligned with its recipients.

        Raises `ProviderAccountError` for account-wide failures, and only when the provider
        took none of the call's recipients (the dispatcher then treats them all as not
        sent); once some went out, the others come back TRANSIENT. Anything transient about
        the whole request (5xx, timeout, connection refused) comes back as TRANSIENT
        deliveries.
        """
        ...

    async def account_state(self) -> ProviderState:
        """A cheap check of the account, used to probe a provider the circuit stopped using."""
        ...

    async def close(self) -> None: ...
