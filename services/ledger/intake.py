"""The ledger's event consumer: the four event queues, one shape, settled a batch at a time.

Each delivery is decoded where it arrives (a plain function call, no handler machinery)
and added to the batcher with its rows. When the batch is in ClickHouse it is settled:
the events the ledger cannot record go to `rsms.ledger.dead` with their reason first,
then every delivery of the batch is acked, normally with one multiple-ack for all four
queues (they share one channel: `acks.py` says which frames are safe). Nothing is acked
before its batch is written; a batch that could not be written is handed back.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from services.ledger.batcher import RowBatcher
from services.ledger.metrics import LedgerMetrics
from services.ledger.rows import EventRejected, RowChunk, inbound_rows, outcome_rows, receipt_rows, request_rows
from shared.ack_plan import ChannelTags, note_handed_back, plan_acks
from shared.rabbitmq import AMQPError, DeliveryChannel, RawDelivery, ack_on_channel, hand_back
from shared.topology import (
    LEDGER_ACCEPTED_QUEUE,
    LEDGER_INBOUND_QUEUE,
    LEDGER_OUTCOMES_QUEUE,
    LEDGER_RECEIPTS_QUEUE,
)

Decode = Callable[[bytes], RowChunk]
DeadLetter = Callable[[bytes, str], Awaitable[None]]

EVENT_QUEUES: dict[str, Decode] = {
    LEDGER_ACCEPTED_QUEUE.name: request_rows,
    LEDGER_OUTCOMES_QUEUE.name: outcome_rows,
    LEDGER_RECEIPTS_QUEUE.name: receipt_rows,
    LEDGER_INBOUND_QUEUE.name: inbound_rows,
}
"""Each event queue and what turns one of its bodies into rows."""

SETTLE_ERRORS = (AMQPError, ConnectionError, RuntimeError)
"""A frame that cannot be sent: the channel is gone (aiormq's ChannelInvalidStateError is a
RuntimeError), and the broker returns to the queue whatever it did not get acked."""


@dataclass(slots=True)
class Delivery:
    message: RawDelivery
    queue: str
    rejection: str | None = None
    """Why the event cannot be recorded (it goes to the dead-letter queue), else None."""


class EventIntake:
    def __init__(self, dead_letter: DeadLetter, metrics: LedgerMetrics, log: Any) -> None:
        self._dead_letter = dead_letter
        self._metrics = metrics
        self._log = log
        self._channels: dict[DeliveryChannel, ChannelTags] = {}
        self.batcher: RowBatcher[Delivery] | None = None

    def receiver(self, queue: str) -> Callable[[RawDelivery], Awaitable[None]]:
        """The function each delivery of `queue` is handed to."""
        decode = EVENT_QUEUES[queue]
        consumed = self._metrics.events_consumed.labels(queue)

        async def receive(message: RawDelivery) -> None:
            assert self.batcher is not None, "consuming starts once the batcher is set"
            consumed.inc()
            try:
                chunk = decode(message.body)
            except EventRejected as error:
                # Retrying cannot fix a body: it is kept for an operator, off the work queue.
                self._metrics.events_rejected.labels(queue).inc()
                self._log.error("ledger.event_rejected", queue=queue, reason=str(error)[:500])
                self.batcher.add(Delivery(message, queue, str(error)[:1000]), None)
                return
            self.batcher.add(Delivery(message, queue), chunk)

        return receive

    async def settle(self, deliveries: list[Delivery]) -> None:
        """The batch is written: dead-letter its rejected events, then ack it all."""
        settled: list[Delivery] = []
        returned: list[Delivery] = []
        for delivery in deliveries:
            if delivery.rejection is None:
                settled.append(delivery)
                continue
            try:
                await self._dead_letter(delivery.message.body, delivery.rejection)
            except Exception as error:
                self._log.warning("ledger.dead_letter_failed", queue=delivery.queue, error=type(error).__name__)
                returned.append(delivery)
            else:
                settled.append(delivery)
        if returned:
            await self.hand_back(returned)
        for channel, by_tag in _by_channel(settled).items():
            frames = plan_acks(self._state(channel), by_tag)
            try:
                for frame in frames:
                    await ack_on_channel(channel, frame.tag, multiple=frame.multiple)
            except SETTLE_ERRORS as error:
                self._log.warning("ledger.ack_failed", deliveries=len(by_tag), error=type(error).__name__)

    async def hand_back(self, deliveries: list[Delivery]) -> None:
        """Not written (the ledger is stopping, or a dead-letter failed): back to the queue."""
        for channel, by_tag in _by_channel(deliveries).items():
            try:
                for delivery in by_tag.values():
                    await hand_back(delivery.message)
            except SETTLE_ERRORS:
                pass  # the channel is gone: the broker has them back already
            # Only now: the nacks are written ahead of any multiple-ack reaching past them.
            note_handed_back(self._state(channel), by_tag)

    def _state(self, channel: DeliveryChannel) -> ChannelTags:
        state = self._channels.get(channel)
        if state is None:
            # A new channel (first start, or after a reconnect): its tags start at 1.
            for old in [c for c in self._channels if c.is_closed]:
                del self._channels[old]
            state = self._channels[channel] = ChannelTags()
        return state


def _by_channel(deliveries: list[Delivery]) -> dict[DeliveryChannel, dict[int, Delivery]]:
    grouped: dict[DeliveryChannel, dict[int, Delivery]] = {}
    for delivery in deliveries:
        message = delivery.message
        grouped.setdefault(message.channel, {})[int(message.delivery_tag or 0)] = delivery
    return grouped
