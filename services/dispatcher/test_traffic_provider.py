"""Jobs sent with an sk_test_ key: every recipient is marked sent without any call, so
test traffic never reaches a provider nor costs anything."""

from __future__ import annotations

from collections.abc import Sequence

from services.dispatcher.provider import Delivery, DeliveryStatus, OutboundBatch
from shared.provider_state import ProviderState


class TestTrafficProvider:
    resends_are_safe = True  # nothing leaves the gateway

    __test__ = False  # not a pytest test class

    async def send(self, batches: Sequence[OutboundBatch]) -> list[list[Delivery]]:
        return [[Delivery(DeliveryStatus.SENT, f"test-{ref}") for ref in b.references] for b in batches]

    async def account_state(self) -> ProviderState:
        return ProviderState.OK

    async def close(self) -> None:
        return None
