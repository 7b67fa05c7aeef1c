"""A broker restart while a job's submit is at the SMSC: the job is recorded as sent, and
its redelivery publishes that outcome instead of holding the recipient for an operator.

In-process, on the real broker (this test's own vhost) and Redis: the job consumer, the
handler and the dispatcher wired as `services.dispatcher.app` wires them, with a provider
that keeps the submit in flight until the test lets it answer. The connection is dropped
the way a broker restart drops it (aio-pika's robust connection reconnects, the broker
redelivers the unacknowledged job on the new channel at once).

Before the fix, aiormq cancelled the handler's task with its channel (it cancels every
consumer task of a closing channel): the submit had left, its outcome was never recorded,
the marker stayed "p", and the redelivery held the recipient (bench.faults_under_load:
17 held in one RabbitMQ stop/start run).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from faststream.rabbit import RabbitBroker

from services.dispatcher.acknowledger import Acknowledger
from services.dispatcher.job_consumer import JobConsumer
from services.dispatcher.job_dispatcher import JobDispatcher, idempotency_reference
from services.dispatcher.job_handler import JobHandler
from services.dispatcher.metrics import DispatcherMetrics
from services.dispatcher.outbox import Outbox
from services.dispatcher.provider import Delivery, DeliveryStatus, OutboundBatch, ProviderState
from services.dispatcher.retry_policy import RetryPolicy
from services.dispatcher.send_markers import SendMarkers, marker_key
from services.dispatcher.test_traffic_provider import TestTrafficProvider
from shared.blocklist import Blocklist
from shared.rabbitmq import RawDelivery
from shared.redis_connection import connect
from shared.topology import DEAD_LETTER_QUEUE, LEDGER_OUTCOMES_QUEUE, declare_topology
from tests.dispatcher.harness import eventually, make_job, peek, peek_events, publish


class HeldSubmits:
    """An SMSC that takes each submit at once and answers only when the test says so; it
    never deduplicates (SMPP: a second submit is a second SMS)."""

    resends_are_safe = False

    def __init__(self) -> None:
        self.submitted: list[str] = []
        self.answer = asyncio.Event()

    async def send(self, batches: Sequence[OutboundBatch]) -> list[list[Delivery]]:
        for batch in batches:
            self.submitted.extend(batch.recipients)
        await self.answer.wait()
        return [[Delivery(DeliveryStatus.SENT, ref) for ref in batch.references] for batch in batches]

    async def account_state(self) -> ProviderState:
        return ProviderState.OK

    async def close(self) -> None:
        return None


class ClosedCircuit:
    is_open = False

    def trip(self, state: ProviderState) -> None:
        raise AssertionError("the provider did not fail")


async def test_a_submit_in_flight_when_the_connection_drops_is_recorded_and_its_redelivery_not_held(
    amqp_url: str, redis_url: str
) -> None:
    broker = RabbitBroker(amqp_url, logger=None)
    await broker.connect()
    redis = connect(redis_url, decode_responses=True)
    consumer: JobConsumer | None = None
    try:
        await declare_topology(broker)
        smsc = HeldSubmits()
        dispatcher = JobDispatcher(
            smsc,
            TestTrafficProvider(),
            SendMarkers(redis, 3600),
            Blocklist(redis),
            RetryPolicy(3, (100,)),
            batch_size=10,
        )
        outbox = Outbox(broker, 5.0)
        await outbox.start()
        handler = JobHandler(dispatcher, outbox, ClosedCircuit(), DispatcherMetrics(), 0.05, Acknowledger())  # type: ignore[arg-type]
        deliveries: list[RawDelivery] = []

        async def handle(message: RawDelivery) -> None:
            deliveries.append(message)
            await handler.handle(message)

        consumer = JobConsumer(broker, handle, prefetch=10)
        await consumer.start()

        job = make_job(["+4790000001"])
        await publish(amqp_url, job)
        await eventually(lambda: asyncio.sleep(0, smsc.submitted), bool, what="the submit at the SMSC")

        # The broker restarts while the submit is at the SMSC, unanswered.
        connection = broker._connection
        assert connection is not None and connection.transport is not None
        await connection.transport.connection.close(ConnectionError("broker restarted"))
        await eventually(lambda: asyncio.sleep(0, len(deliveries)), lambda n: n == 2, what="the redelivery")
        await asyncio.sleep(0.5)  # the redelivery's claim, had it gone ahead, is made by now

        smsc.answer.set()  # the SMSC answers the first submit
        events = await eventually(
            lambda: peek_events(amqp_url, LEDGER_OUTCOMES_QUEUE.name), bool, what="the outcome event"
        )

        assert smsc.submitted == ["+4790000001"], "sent once"
        statuses = {o["status"] for e in events for o in e["outcomes"]}
        assert statuses == {"sent"}, f"published as sent, not held: {events}"
        assert await peek(amqp_url, DEAD_LETTER_QUEUE.name) == [], "nobody held for an operator"
        marker = await redis.hget(marker_key(job.message_id), "+4790000001")
        assert marker == f"s:{idempotency_reference(job.message_id, '+4790000001')}"
    finally:
        if consumer is not None:
            await consumer.stop(2.0)
        await broker.stop()
        await redis.aclose()
