"""RabbitMQ topology: every exchange and queue, declared in one place.

Producer and consumer take their names from here, so they cannot drift apart, and every
service calls `declare_topology` at start: declarations are idempotent, so whichever
service starts first builds the whole topology and the ingest service's mandatory
publishes always find their queues.

    ingest ──SmsJob──▶ [rsms.accepted] (fanout)
                          ├──▶ rsms.dispatch.jobs      ──▶ dispatcher
                          └──▶ rsms.ledger.accepted    ──▶ ledger (audit trail)
    dispatcher ──OutcomeEvent──▶ [rsms.outcomes] (fanout)
                          └──▶ rsms.ledger.outcomes    ──▶ ledger (per-recipient rows)
    dispatcher retry ──▶ rsms.dispatch.retry.<n> (TTL) ──dead-letter──▶ rsms.dispatch.jobs
    dispatcher give-up / poison ──▶ rsms.dispatch.dead (operator: `rsms dlq`)
    ingest / rsms usage ──query──▶ rsms.ledger.queries ──reply──▶ caller
    ledger, an event it cannot record ──▶ rsms.ledger.dead (operator)
    dispatcher ──ReceiptEvent──▶ [rsms.receipts] (fanout)
                          └──▶ rsms.ledger.receipts    ──▶ ledger (delivery status rows)
    dispatcher, a receipt not matched yet ──▶ rsms.receipts.retry (TTL) ──dead-letter──▶
                          rsms.receipts.pending ──▶ dispatcher (matches it again)
    dispatcher, a receipt unmatched after the grace period ──▶ rsms.receipts.unmatched
                          (operator: `rsms receipts unmatched`)
    [rsms.outcomes], [rsms.receipts], [rsms.inbound] ──▶ rsms.webhooks.{outcomes,receipts,inbound}
                          ──▶ webhook sender ──HTTP──▶ each project's URL
    webhook sender, a delivery not taken ──▶ rsms.webhooks.retry.<n> (TTL) ──dead-letter──▶
                          rsms.webhooks.retries ──▶ webhook sender (tries it again)
    webhook sender, after the last attempt ──▶ rsms.webhooks.dead (operator: `rsms webhooks`)

Work queues are quorum queues: replicated, durable and safe under publisher confirms.
The delay queues are classic queues because they only hold a message until its TTL runs
out and dead-letters it back; they carry no consumer.
"""

from __future__ import annotations

from faststream.rabbit import ExchangeType, QueueType, RabbitBroker, RabbitExchange, RabbitQueue

ACCEPTED_EXCHANGE = RabbitExchange("rsms.accepted", type=ExchangeType.FANOUT, durable=True)
OUTCOMES_EXCHANGE = RabbitExchange("rsms.outcomes", type=ExchangeType.FANOUT, durable=True)
# Carrier events (shared/contracts.py): published by the dispatcher, which holds the carrier
# connection; fanned out so the ledger and the webhook sender each get their own copy.
RECEIPTS_EXCHANGE = RabbitExchange("rsms.receipts", type=ExchangeType.FANOUT, durable=True)
INBOUND_EXCHANGE = RabbitExchange("rsms.inbound", type=ExchangeType.FANOUT, durable=True)

DISPATCH_QUEUE = RabbitQueue("rsms.dispatch.jobs", queue_type=QueueType.QUORUM)
# Classic, not quorum: operators peek at it (`rsms dlq list` gets and requeues), and a
# quorum queue counts every requeue against its delivery limit (20 by default since
# RabbitMQ 4), so looking at a dead letter often enough would drop it.
DEAD_LETTER_QUEUE = RabbitQueue("rsms.dispatch.dead", queue_type=QueueType.CLASSIC, durable=True)
LEDGER_ACCEPTED_QUEUE = RabbitQueue("rsms.ledger.accepted", queue_type=QueueType.QUORUM)
LEDGER_OUTCOMES_QUEUE = RabbitQueue("rsms.ledger.outcomes", queue_type=QueueType.QUORUM)
LEDGER_QUERIES_QUEUE = RabbitQueue("rsms.ledger.queries", queue_type=QueueType.CLASSIC)
# Events the ledger cannot record (malformed, unknown schema version), kept for an operator;
# classic like the dispatch dead letters, so peeking does not count against a delivery limit.
LEDGER_DEAD_LETTER_QUEUE = RabbitQueue("rsms.ledger.dead", queue_type=QueueType.CLASSIC, durable=True)

LEDGER_RECEIPTS_QUEUE = RabbitQueue("rsms.ledger.receipts", queue_type=QueueType.QUORUM)
# A receipt that came before the dispatcher recorded its part's carrier id (submit_sm_resp
# and deliver_sm race on an SMPP bind) waits here, not in a sleeping handler.
RECEIPTS_PENDING_QUEUE = RabbitQueue("rsms.receipts.pending", queue_type=QueueType.QUORUM)
RECEIPT_RETRY_DELAY_MS = 1_000
RECEIPTS_RETRY_QUEUE = RabbitQueue(
    "rsms.receipts.retry",
    queue_type=QueueType.CLASSIC,
    durable=True,
    arguments={
        "x-message-ttl": RECEIPT_RETRY_DELAY_MS,
        "x-dead-letter-exchange": "",
        "x-dead-letter-routing-key": RECEIPTS_PENDING_QUEUE.name,
    },
)
# Receipts nobody matched, kept for an operator. Classic for the reason the dead letters
# are: `rsms receipts unmatched` peeks (gets and requeues), which a quorum queue would count
# against its delivery limit until it dropped the receipt.
RECEIPTS_UNMATCHED_QUEUE = RabbitQueue("rsms.receipts.unmatched", queue_type=QueueType.CLASSIC, durable=True)

# The webhook sender's own copy of every outcome, receipt and inbound message (the
# exchanges fan out), so a slow receiver delays nothing the ledger or the dispatcher does.
WEBHOOK_OUTCOMES_QUEUE = RabbitQueue("rsms.webhooks.outcomes", queue_type=QueueType.QUORUM)
WEBHOOK_RECEIPTS_QUEUE = RabbitQueue("rsms.webhooks.receipts", queue_type=QueueType.QUORUM)
WEBHOOK_INBOUND_QUEUE = RabbitQueue("rsms.webhooks.inbound", queue_type=QueueType.QUORUM)
# Deliveries back from a webhook delay queue, to be tried again.
WEBHOOK_RETRIES_QUEUE = RabbitQueue("rsms.webhooks.retries", queue_type=QueueType.QUORUM)
# Classic for the reason the dispatch dead letters are: `rsms webhooks list` peeks.
WEBHOOK_DEAD_LETTER_QUEUE = RabbitQueue("rsms.webhooks.dead", queue_type=QueueType.CLASSIC, durable=True)


def webhook_retry_queue(delay_ms: int) -> RabbitQueue:
    """A delay queue: holds a webhook delivery for `delay_ms`, then dead-letters it to the retries queue."""
    return RabbitQueue(
        f"rsms.webhooks.retry.{delay_ms}ms",
        queue_type=QueueType.CLASSIC,
        durable=True,
        arguments={
            "x-message-ttl": delay_ms,
            "x-dead-letter-exchange": "",
            "x-dead-letter-routing-key": WEBHOOK_RETRIES_QUEUE.name,
        },
    )


# Exponential backoff: attempt n waits RETRY_DELAYS_MS[n-1] (the last one repeats).
RETRY_DELAYS_MS: tuple[int, ...] = (1_000, 5_000, 25_000, 120_000, 600_000)


def retry_queue(delay_ms: int) -> RabbitQueue:
    """A delay queue: holds a job for `delay_ms`, then dead-letters it to the dispatch queue."""
    return RabbitQueue(
        f"rsms.dispatch.retry.{delay_ms}ms",
        queue_type=QueueType.CLASSIC,
        durable=True,
        arguments={
            "x-message-ttl": delay_ms,
            "x-dead-letter-exchange": "",
            "x-dead-letter-routing-key": DISPATCH_QUEUE.name,
        },
    )


async def declare_topology(broker: RabbitBroker, retry_delays_ms: tuple[int, ...] = RETRY_DELAYS_MS) -> None:
    accepted = await broker.declare_exchange(ACCEPTED_EXCHANGE)
    outcomes = await broker.declare_exchange(OUTCOMES_EXCHANGE)
    for queue in (DISPATCH_QUEUE, LEDGER_ACCEPTED_QUEUE):
        declared = await broker.declare_queue(queue)
        await declared.bind(accepted)
    ledger_outcomes = await broker.declare_queue(LEDGER_OUTCOMES_QUEUE)
    await ledger_outcomes.bind(outcomes)
    receipts = await broker.declare_exchange(RECEIPTS_EXCHANGE)
    await broker.declare_exchange(INBOUND_EXCHANGE)
    ledger_receipts = await broker.declare_queue(LEDGER_RECEIPTS_QUEUE)
    await ledger_receipts.bind(receipts)
    for queue in (RECEIPTS_PENDING_QUEUE, RECEIPTS_RETRY_QUEUE, RECEIPTS_UNMATCHED_QUEUE):
        await broker.declare_queue(queue)
    await broker.declare_queue(DEAD_LETTER_QUEUE)
    await broker.declare_queue(LEDGER_QUERIES_QUEUE)
    await broker.declare_queue(LEDGER_DEAD_LETTER_QUEUE)
    for delay in sorted(set(retry_delays_ms)):
        await broker.declare_queue(retry_queue(delay))


async def declare_webhook_queues(broker: RabbitBroker, retry_delays_ms: tuple[int, ...]) -> None:
    """The webhook sender's queues, bound to the events they copy: declared by the sender
    itself, so a gateway that never runs it (benchmarks, a deployment without webhooks)
    does not pile up copies nobody reads. From its first start on they are durable, and
    events wait there while it is down."""
    sources = (
        (WEBHOOK_OUTCOMES_QUEUE, OUTCOMES_EXCHANGE),
        (WEBHOOK_RECEIPTS_QUEUE, RECEIPTS_EXCHANGE),
        (WEBHOOK_INBOUND_QUEUE, INBOUND_EXCHANGE),
    )
    for queue, exchange in sources:
        declared = await broker.declare_queue(queue)
        await declared.bind(await broker.declare_exchange(exchange))
    await broker.declare_queue(WEBHOOK_RETRIES_QUEUE)
    await broker.declare_queue(WEBHOOK_DEAD_LETTER_QUEUE)
    for delay in sorted(set(retry_delays_ms)):
        await broker.declare_queue(webhook_retry_queue(delay))
