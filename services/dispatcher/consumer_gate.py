"""Stops and restarts consumption of the dispatch queue while the provider is down.

FastStream 0.7 has no pause (`subscriber.stop()` leaves what the broker delivers
meanwhile unacknowledged), so this cancels the subscriber's AMQP consumer and consumes
again on resume: `shared.rabbitmq.pause_consumer` / `resume_consumer`. Deliveries in
flight when it pauses are handed back by their handlers.
"""

from __future__ import annotations

from faststream.rabbit.subscriber import RabbitSubscriber

from shared import rabbitmq


class ConsumerGate:
    def __init__(self, subscriber: RabbitSubscriber) -> None:
        self._subscriber = subscriber
        self.paused = False

    async def pause(self) -> None:
        if await rabbitmq.pause_consumer(self._subscriber):
            self.paused = True

    async def resume(self) -> None:
        if await rabbitmq.resume_consumer(self._subscriber):
            self.paused = False
