"""Stops and restarts consumption of the dispatch queue while the provider is down.

FastStream 0.7 has no pause: `subscriber.stop()` marks the subscriber stopped first and
cancels the consumer only after in-flight handlers finish, and messages the broker
delivers in between are silently left unacknowledged. So this cancels the AMQP consumer
itself (no more deliveries; in-flight ones are handed back by their handlers) and
consumes again on resume. Both reach into the subscriber's queue and consumer tag.
"""

from __future__ import annotations

from faststream.rabbit.subscriber import RabbitSubscriber


class ConsumerGate:
    def __init__(self, subscriber: RabbitSubscriber) -> None:
        self._subscriber = subscriber
        self.paused = False

    async def pause(self) -> None:
        subscriber = self._subscriber
        queue, tag = subscriber._queue_obj, subscriber._consumer_tag
        if queue is None or tag is None:
            return
        await queue.cancel(tag)
        subscriber._consumer_tag = None
        self.paused = True

    async def resume(self) -> None:
        subscriber = self._subscriber
        queue = subscriber._queue_obj
        if queue is None or subscriber._consumer_tag is not None:
            return
        subscriber._consumer_tag = await queue.consume(
            subscriber.consume,  # type: ignore[arg-type]
            no_ack=False,
            arguments=subscriber.consume_args,
        )
        self.paused = False
