"""Consumes the dispatch queue: starts, pauses while the provider is down, stops gracefully.

The jobs come through `shared.rabbitmq.consume_raw`, not a FastStream subscriber: for a
single-recipient job FastStream's per-message path (context scopes, middlewares, parser,
decoder, logging, ack policy) was about a third of the dispatcher's CPU. Each delivery goes
straight to the job handler, which settles it itself (the acknowledger's grouped acks, or
a nack). On a separate channel with the dispatcher's prefetch; aio-pika's robust queue
consumes again with the same callback after a reconnect. A job being handled when the
channel closes (a broker restart) is handled to its end, its outcome recorded in its send
markers; only its ack fails, and its redelivery (`JobDispatcher`: after this one) publishes
that outcome without sending again.

Pausing cancels the AMQP consumer (no more deliveries; those in flight are handed back by
the handler while the circuit is open) and resuming consumes again. Stopping cancels the
consumer, then waits up to the grace period for the jobs in flight to finish and be
acknowledged, while the broker connection is still open.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

from faststream.rabbit import Channel, RabbitBroker

from shared.log import get_logger
from shared.rabbitmq import AMQPError, RawConsumer, RawDelivery, consume_raw
from shared.topology import DISPATCH_QUEUE

log = get_logger(__name__)


class JobConsumer:
    def __init__(self, broker: RabbitBroker, handle: Callable[[RawDelivery], Awaitable[None]], prefetch: int) -> None:
        self._broker = broker
        self._handle = handle
        # Its own channel: its delivery tags are the acknowledger's alone (no other consumer
        # on it), and the prefetch bounds the jobs in flight.
        self._channel = Channel(prefetch_count=prefetch)
        self._consumer: RawConsumer | None = None
        self._in_flight = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self._stopping = False
        self.paused = False

    async def start(self) -> None:
        """Consumes the dispatch queue (declared already); call once the broker is started."""
        # A job's handling outlives its channel: cancelled by a broker restart between a
        # submit and the record of its outcome, the job's recipients were left "outcome
        # unknown" and its redelivery held them for an operator.
        self._consumer = await consume_raw(
            self._broker, DISPATCH_QUEUE.name, self._channel, self._deliver, outlive_channel=True
        )

    async def _deliver(self, message: RawDelivery) -> None:
        self._in_flight += 1
        self._idle.clear()
        try:
            await self._handle(message)
        except Exception:
            # A handler bug: logged as FastStream's subscriber did; the delivery stays
            # unsettled, and the broker has it back when the channel closes.
            log.exception("job handling failed")
        finally:
            self._in_flight -= 1
            if self._in_flight == 0:
                self._idle.set()

    def attached(self) -> bool:
        """The broker delivers jobs to this consumer now (readiness)."""
        return self._consumer is not None and self._consumer.attached()

    async def pause(self) -> None:
        if self._consumer is not None and await self._consumer.pause():
            self.paused = True

    async def resume(self) -> None:
        if self._stopping or self._consumer is None:
            return
        if await self._consumer.resume():
            self.paused = False

    async def stop(self, grace_seconds: float) -> None:
        """No more deliveries, then the jobs in flight finish (up to `grace_seconds`) and are
        acknowledged; what does not finish in time goes back to the queue with the channel."""
        self._stopping = True
        if self._consumer is not None:
            with contextlib.suppress(AMQPError, RuntimeError, ConnectionError):
                await self._consumer.cancel()
        # Deliveries read before the cancel-ok have their tasks scheduled, not yet started.
        for _ in range(3):
            await asyncio.sleep(0)
        try:
            await asyncio.wait_for(self._idle.wait(), grace_seconds)
        except TimeoutError:
            log.warning("jobs still in flight at shutdown; the broker redelivers them", jobs=self._in_flight)
