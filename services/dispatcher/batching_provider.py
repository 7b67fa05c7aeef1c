"""Merges sends that arrive together into fewer provider requests.

Each job handler sends its own batch; with many small jobs in flight (one recipient
each, a thousand a second) one HTTP request per job would cost more than everything
else. A full request (`max_recipients`) leaves at once on any free slot; a partial one
leaves at once only while fewer than `max_partial_requests` partial requests are in
flight. So a lone job waits for nothing, and under load the small batches that pile up
behind a request in flight leave together with it returns: the busier the provider, the
bigger the requests. The wrapped provider sees ordinary multi-message requests, which
real batch APIs accept. The grouping is `shared.turn_batch.TurnBatch`'s (its options
`max_size`, `max_in_flight` and `max_partial_in_flight` are these three limits).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence

from services.dispatcher.provider import Delivery, OutboundBatch, Provider
from shared.provider_state import ProviderState
from shared.turn_batch import TurnBatch, regroup

_Batches = tuple[OutboundBatch, ...]
"""The batches of one `send` call: one item, one wait for all of their answers."""


def _recipients(batches: _Batches) -> int:
    return sum(len(batch.recipients) for batch in batches)


class BatchingProvider:
    def __init__(
        self,
        inner: Provider,
        max_recipients: int,
        max_concurrent_requests: int,
        max_partial_requests: int = 1,
        observe_latency: Callable[[float], None] = lambda seconds: None,
    ) -> None:
        self._inner = inner
        self.resends_are_safe = inner.resends_are_safe
        self._observe_latency = observe_latency
        # The batches handed in during one loop turn go together, up to `max_recipients`
        # a request; a partial request waits while `max_partial_requests` are in flight.
        self._max_recipients = max_recipients
        self._requests: TurnBatch[_Batches, list[list[Delivery]]] = TurnBatch(
            self._request,
            max_size=max_recipients,
            size_of=_recipients,
            max_in_flight=max_concurrent_requests,
            max_partial_in_flight=max_partial_requests,
        )

    async def send(self, batches: Sequence[OutboundBatch]) -> list[list[Delivery]]:
        if _recipients(tuple(batches)) <= self._max_recipients:
            # The common case (one job's chunk, or the jobs of a delivery that fit one
            # request): one item, one wait.
            return await self._requests.submit(tuple(batches))
        answers = await asyncio.gather(*(self._requests.put((batch,)) for batch in batches))
        return [deliveries for (deliveries,) in answers]

    async def account_state(self) -> ProviderState:
        return await self._inner.account_state()

    async def close(self) -> None:
        await self._requests.close()
        await self._inner.close()

    async def _request(self, items: list[_Batches]) -> list[list[list[Delivery]]]:
        # An error reaches every job in the request (ProviderAccountError above all), and
        # each decides what it means for its own message.
        started = time.perf_counter()
        try:
            answers = await self._inner.send([batch for batches in items for batch in batches])
        finally:
            self._observe_latency(time.perf_counter() - started)
        return regroup(answers, items)
