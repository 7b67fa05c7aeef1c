"""Merges sends that arrive together into fewer provider requests.

Each job handler sends its own batch; with many small jobs in flight (one recipient
each, a thousand a second) one HTTP request per job would cost more than everything
else. A full request (`max_recipients`) leaves at once on any free slot; a partial one
leaves at once only while fewer than `max_partial_requests` partial requests are in
flight. So a lone job waits for nothing, and under load the small batches that pile up
behind a request in flight leave together with it returns: the busier the provider, the
bigger the requests. The wrapped provider sees ordinary multi-message requests, which
real batch APIs accept.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable, Sequence

from services.dispatcher.provider import Delivery, OutboundBatch, Provider
from shared.provider_state import ProviderState

_Pending = tuple[OutboundBatch, "asyncio.Future[list[Delivery]]"]


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
        self._max_recipients = max_recipients
        self._max_requests = max_concurrent_requests
        self._max_partial = max_partial_requests
        self._partial_in_flight = 0
        self._pending: deque[_Pending] = deque()
        self._in_flight = 0
        self._launch_scheduled = False
        self._requests: set[asyncio.Task[None]] = set()

    async def send(self, batches: Sequence[OutboundBatch]) -> list[list[Delivery]]:
        loop = asyncio.get_running_loop()
        futures = []
        for batch in batches:
            future: asyncio.Future[list[Delivery]] = loop.create_future()
            self._pending.append((batch, future))
            futures.append(future)
        self._schedule_launch()
        return list(await asyncio.gather(*futures))

    async def account_state(self) -> ProviderState:
        return await self._inner.account_state()

    async def close(self) -> None:
        if self._requests:
            await asyncio.gather(*self._requests, return_exceptions=True)
        await self._inner.close()

    def _schedule_launch(self) -> None:
        # Launch on the next loop turn, so handlers woken in the same turn share a request.
        if not self._launch_scheduled and self._pending and self._in_flight < self._max_requests:
            self._launch_scheduled = True
            asyncio.get_running_loop().call_soon(self._launch)

    def _launch(self) -> None:
        self._launch_scheduled = False
        while self._pending and self._in_flight < self._max_requests:
            size, count = 0, 0
            for batch, _ in self._pending:
                if count and size + len(batch.recipients) > self._max_recipients:
                    break
                size += len(batch.recipients)
                count += 1
            full = count < len(self._pending) or size >= self._max_recipients
            if not full and self._partial_in_flight >= self._max_partial:
                return  # wait for a request to come back; more will have piled up
            group = [self._pending.popleft() for _ in range(count)]
            self._in_flight += 1
            self._partial_in_flight += not full
            task = asyncio.create_task(self._request(group, partial=not full))
            self._requests.add(task)
            task.add_done_callback(self._requests.discard)

    async def _request(self, group: list[_Pending], partial: bool) -> None:
        started = time.perf_counter()
        try:
            answers = await self._inner.send([batch for batch, _ in group])
        except asyncio.CancelledError:
            for _, future in group:
                future.cancel()
            raise
        except Exception as exc:
            # Not swallowed: every job in the request gets it (ProviderAccountError above
            # all) and decides what it means for its own message.
            for _, future in group:
                if not future.done():
                    future.set_exception(exc)
        else:
            for (_, future), deliveries in zip(group, answers, strict=True):
                if not future.done():
                    future.set_result(deliveries)
        finally:
            self._observe_latency(time.perf_counter() - started)
            self._in_flight -= 1
            self._partial_in_flight -= partial
            self._schedule_launch()
