"""Everything the dispatcher publishes, each with a publisher confirm before it returns:
outcome events, retries into the delay queues, dead letters, carrier receipts and inbound.

Publishes go straight to a confirm channel of their own (`shared.rabbitmq.ConfirmedPublisher`),
not through FastStream's publish path, which cost more CPU per job attempt than the
publish itself (the adapter says why).

What is guaranteed does not change: every message is persistent and mandatory, and each
caller waits for the broker's confirm of its own messages (a nack raises DeliveryError).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Sequence

from faststream.rabbit import RabbitBroker

from services.dispatcher.job_dispatcher import DispatchResult
from shared.contracts import Contract, DeadLetter, OutcomeEvent
from shared.rabbitmq import ConfirmedPublisher, PublishHealth
from shared.topology import DEAD_LETTER_QUEUE, OUTCOMES_EXCHANGE, retry_queue
from shared.turn_batch import TurnBatch

OUTCOME_BATCH_OPEN = b'{"schema_version":1,"events":['  # shared.contracts.OutcomeBatch
_MAX_OUTCOMES_PER_MESSAGE = 1_000


def _outcomes(events: tuple[OutcomeEvent, ...]) -> int:
    return sum(len(event.outcomes) for event in events)


class Outbox:
    def __init__(self, broker: RabbitBroker, timeout_seconds: float, health: PublishHealth | None = None) -> None:
        # A confirm channel of its own, not the one jobs are delivered on.
        self._publisher = ConfirmedPublisher(broker, timeout_seconds)
        # These publishes bypass FastStream's middlewares: recorded here, so refused ones
        # make the service unready (and, when stuck, reconnect it to another node).
        self._health = health or PublishHealth()
        # A message carries at most this many recipients' outcomes (a 1000-recipient job's
        # event goes alone); more in one turn go in more messages. A partial message waits
        # while another is unconfirmed, so under load the events pile up behind it and go
        # together (group commit), for at most one confirm's wait more.
        # A delivery's events are one item: one wait for all of them.
        self._events: TurnBatch[tuple[OutcomeEvent, ...], None] = TurnBatch(
            self._publish_events, max_size=_MAX_OUTCOMES_PER_MESSAGE, size_of=_outcomes, max_partial_in_flight=1
        )

    async def start(self) -> None:
        """Opens the channel; call once the broker is connected."""
        await self._publisher.open()

    async def publish_result(self, result: DispatchResult) -> None:
        """Returns once the broker confirmed every message the attempt produced."""
        await self.publish_results([result])

    async def publish_results(self, results: Sequence[DispatchResult], dead_letters: Sequence[DeadLetter] = ()) -> None:
        """The attempts of one delivery's jobs: their outcome events, with the events of
        the other deliveries finishing in the same event-loop turn, as one message (one
        `OutcomeEvent` alone, an `OutcomeBatch` for more); each job's retry and dead
        letters as their own messages. Returns once the broker confirmed all of them."""
        events = tuple(result.event for result in results)
        sends: list[Awaitable[None]]
        if _outcomes(events) <= _MAX_OUTCOMES_PER_MESSAGE:
            # The common case (small jobs): the delivery's events are one item, one wait.
            sends = [self._events.put(events)] if events else []
        else:
            sends = [self._events.put((event,)) for event in events]
        sends.extend(self.publish_dead_letter(letter) for letter in dead_letters)
        for result in results:
            sends.extend(self._follow_ups(result))
        if len(sends) == 1:
            await sends[0]  # the common case: no gather machinery
        else:
            await asyncio.gather(*sends)

    async def _publish_events(self, handed_in: list[tuple[OutcomeEvent, ...]]) -> list[None]:
        """One message, one confirm for the outcome events of every delivery that finished
        in one loop turn: with a thousand single-recipient jobs a second, a message each
        cost the dispatcher and the broker more than the events themselves. Each event
        keeps its own event_id, and the consumers deduplicate event by event whatever the
        grouping (`OutcomeBatch`); a delivery is acknowledged only once the message that
        carries its events is confirmed (an error reaches every delivery in it, and each
        is handed back)."""
        events = [event for events in handed_in for event in events]
        if len(events) == 1:
            await self._publish(events[0], exchange=OUTCOMES_EXCHANGE.name, routing_key="")
        else:
            # The events' own JSON spliced in: each encoded once, as a lone event would be.
            body = OUTCOME_BATCH_OPEN + b",".join(e.model_dump_json().encode() for e in events) + b"]}"
            await self._publish_body(body, exchange=OUTCOMES_EXCHANGE.name, routing_key="", message_id=None)
        return [None] * len(handed_in)

    def _follow_ups(self, result: DispatchResult) -> list[Awaitable[None]]:
        """What an attempt publishes besides its outcome event: its retry, its dead letter
        and its held recipients, each where there is one."""
        sends: list[Awaitable[None]] = []
        if result.retry is not None:
            sends.append(self._publish(result.retry, routing_key=retry_queue(result.retry_delay_ms).name))
        if result.dead_letter is not None:
            sends.append(self.publish_dead_letter(result.dead_letter))
        if result.held is not None:
            sends.append(self.publish_dead_letter(result.held))
        return sends

    async def publish_dead_letter(self, dead_letter: DeadLetter) -> None:
        await self._publish(dead_letter, routing_key=DEAD_LETTER_QUEUE.name)

    async def publish(self, message: Contract, *, exchange: str = "", routing_key: str = "") -> None:
        """Any contract message (receipt events, inbound messages), confirmed before it returns."""
        await self._publish(message, routing_key=routing_key, exchange=exchange)

    async def _publish(self, message: Contract, *, routing_key: str, exchange: str = "") -> None:
        await self._publish_body(
            message.model_dump_json().encode(),
            exchange=exchange,
            routing_key=routing_key,
            message_id=str(getattr(message, "event_id", "")) or None,
        )

    async def _publish_body(self, body: bytes, *, exchange: str, routing_key: str, message_id: str | None) -> None:
        await self._health.watch(
            self._publisher.publish(body, exchange=exchange, routing_key=routing_key, message_id=message_id)
        )
