"""`BatchingProvider`: the sends of one loop turn go to the provider together, up to
`max_recipients` a request, and each caller gets its own batches' answers."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from services.dispatcher.batching_provider import BatchingProvider
from services.dispatcher.provider import Delivery, DeliveryStatus, OutboundBatch, ProviderAccountError
from shared.provider_state import ProviderState


class Recording:
    resends_are_safe = False

    def __init__(self) -> None:
        self.requests: list[list[list[str]]] = []
        self.refuse = False

    async def send(self, batches: Sequence[OutboundBatch]) -> list[list[Delivery]]:
        self.requests.append([list(b.recipients) for b in batches])
        if self.refuse:
            raise ProviderAccountError(ProviderState.NO_CREDITS, "out of credits")
        return [[Delivery(DeliveryStatus.SENT, f"ref-{r}") for r in b.recipients] for b in batches]

    async def account_state(self) -> ProviderState:
        return ProviderState.OK

    async def close(self) -> None:
        return None


def batch(*recipients: str) -> OutboundBatch:
    return OutboundBatch("RSMS", "hi", list(recipients), [f"x-{r}" for r in recipients])


def references(answers: list[list[Delivery]]) -> list[list[str | None]]:
    return [[d.provider_reference for d in deliveries] for deliveries in answers]


async def test_each_caller_gets_its_own_answers_from_requests_of_at_most_max_recipients() -> None:
    inner = Recording()
    provider = BatchingProvider(inner, max_recipients=4, max_concurrent_requests=8, max_partial_requests=8)
    answers = await asyncio.gather(
        provider.send([batch("a1"), batch("a2", "a3")]),
        provider.send([batch("b1")]),
        provider.send([batch("c1", "c2"), batch("c3", "c4"), batch("c5")]),  # more than one request holds
        provider.send([batch("d1", "d2")]),
    )
    assert [references(a) for a in answers] == [
        [["ref-a1"], ["ref-a2", "ref-a3"]],
        [["ref-b1"]],
        [["ref-c1", "ref-c2"], ["ref-c3", "ref-c4"], ["ref-c5"]],
        [["ref-d1", "ref-d2"]],
    ]
    assert all(sum(len(b) for b in request) <= 4 for request in inner.requests)
    sent = [r for request in inner.requests for b in request for r in b]
    assert sorted(sent) == sorted(["a1", "a2", "a3", "b1", "c1", "c2", "c3", "c4", "c5", "d1", "d2"])
    # A caller's batches that fit one request go in one request, in order.
    assert next(r[:2] for r in inner.requests if ["a1"] in r) == [["a1"], ["a2", "a3"]]


async def test_an_account_refusal_reaches_every_caller_of_the_request() -> None:
    inner = Recording()
    inner.refuse = True
    provider = BatchingProvider(inner, max_recipients=10, max_concurrent_requests=1)
    answers = await asyncio.gather(
        provider.send([batch("a1")]), provider.send([batch("b1"), batch("b2")]), return_exceptions=True
    )
    assert len(inner.requests) == 1
    assert all(isinstance(a, ProviderAccountError) for a in answers)
    with pytest.raises(ProviderAccountError):
        await provider.send([batch("c1")])
