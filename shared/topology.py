"""RabbitMQ topology: every exchange and queue, declared in one place.

Producer and consumer take their names from here, so they cannot drift apart, and every
service calls `declare_topology` at start: declarations are idempotent, so whichever
service starts first builds the whole topology and the ingest service's mandatory
publishes always find their queues.

    ingest ──SmsJob | SmsJobBatch──▶ [rsms.accepted] (fanout)
                          ├──▶ rsms.dispatch.jobs      ──▶ dispatcher
                          └──▶ rsms.ledger.accepted    ──▶ ledger (audit trail)
    dispatcher ──OutcomeEvent | OutcomeBatch──▶ [rsms.outcomes] (fanout)
                          └──▶ rsms.ledger.outcomes    ──▶ ledger (per-recipient rows)
    dispatcher retry ──▶ rsms.dispatch.retry.<n> (TTL) ──dead-letter──▶ rsms.dispatch.jobs
    dispatcher give-up / poison ──▶ rsms.dispatch.dead (operator: `rsms dlq`)
    ingest / rsms usage ──query──▶ rsms.ledger.queries ──reply──▶ caller
    ledger, an event it cannot record ──▶ rsms.ledger.dead (operator: `rsms ledger-dlq`)
    dispatcher ──ReceiptEvent──▶ [rsms.receipts] (fanout)
                          └──▶ rsms.ledger.receipts    ──▶ ledger (delivery status rows)
    dispatcher, a receipt not matched yet ──▶ rsms.receipts.retry (TTL) ──dead-letter──▶
                          rsms.receipts.pending ──▶ dispatcher (matches it again)
    dispatcher, a receipt unmatched after the grace period ──▶ rsms.receipts.unmatched
                          (operator: `rsms receipts unmatched`)
    dispatcher ──InboundMessage──▶ [rsms.inbound] (fanout)
                          └──▶ rsms.ledger.inbound     ──▶ ledger (inbound SMS rows)
    every consumed queue, a message delivered DELIVERY_LIMIT times ──dead-letter──▶
                          its dead-letter queue (dispatch.dead, ledger.dead, receipts.unmatched)
    [rsms.outcomes], [rsms.receipts], [rsms.inbound] ┄┄▶ rsms.webhooks.{outcomes,receipts,inbound}
                          ──▶ webhook sender ──HTTP──▶ each project's URL
                          (┄┄ bound only while some project has a webhook: see below)
    webhook sender, a delivery not taken ──▶ rsms.webhooks.retry.<n> (TTL) ──dead-letter──▶
                          rsms.webhooks.retries ──▶ webhook sender (tries it again)
    webhook sender, after the last attempt ──▶ rsms.webhooks.dead (operator: `rsms webhooks`)

Every queue is a quorum queue (replicated, durable, safe under publisher confirms; no
queue lives on one node only), built by one of four functions that new queues must use too:

- `work_queue(name, dead_letters=...)`: a queue a service consumes. It carries an explicit
  `x-delivery-limit` (`DELIVERY_LIMIT`) and dead-letters a message that reaches it to
  `dead_letters`, at-least-once (the broker keeps the message until the dead-letter queue
  confirmed it; that strategy requires `x-overflow: reject-publish`). Without an explicit
  limit RabbitMQ 4 applies 20 and, with no dead-letter target, drops the message silently:
  a Redis outage that requeues jobs for 30 s was enough to lose some (issue 11).
- `delay_queue(name, delay_ms, target)`: holds a message for its TTL, then dead-letters it
  (reason `expired`, at-least-once) to `target`; no consumer.
- `holding_queue(name)`: kept for an operator, no consumer, no dead-letter target. Operator
  commands read it by taking each message and publishing a confirmed copy back before the
  ack (`cli/queue_moves.py`), never by requeueing: every requeue counts against a quorum
  queue's delivery limit, which RabbitMQ 4 (or a policy) applies even to a queue that sets
  none, so peeking often enough would drop the message.
- `request_queue(name, ttl_ms, delivery_limit)`: requests a caller waits on (the ledger's
  queries); a message older than its TTL, or delivered `delivery_limit` times, is dropped,
  since its caller has given up.

Queue arguments cannot change in place: a deployment declared by an older version is moved
to these arguments by `rsms migrate-topology` (cli/migrate_topology.py).

The webhook sender's three event queues are the one part of the topology that is not
fixed: `bind_webhook_queues` binds them to their exchanges only while at least one project
has a webhook, so a gateway without webhooks does not pay RabbitMQ an extra quorum-queue
enqueue, delivery and ack for every outcome batch, receipt and inbound message. The rule,
asserted by every webhook sender at its start and at every accounts-file reload tick
(services/webhooks/bindings.py): bound iff its directory of webhooks is non-empty. An
event published while they are unbound is not copied for webhooks at all (the same as an
event of a project without a webhook, which the sender always let go); the queues stay
declared and durable, and what is already on them is still consumed. Several senders read
one accounts file; binding and unbinding are idempotent, and since each re-asserts its view
at every tick, they agree again within a tick of the last one reading an edit. Upgrading:
the bindings every older version made go at this version's first start when no project
has a webhook, and `rsms migrate-topology` applies the same rule to the queues it
re-declares (reading `RSMS_ACCOUNTS_FILE` as the sender does).
"""

from __future__ import annotations

from faststream.rabbit import ExchangeType, QueueType, RabbitBroker, RabbitExchange, RabbitQueue
from faststream.rabbit.schemas.queue import QuorumQueueArgs

ACCEPTED_EXCHANGE = RabbitExchange("rsms.accepted", type=ExchangeType.FANOUT, durable=True)
OUTCOMES_EXCHANGE = RabbitExchange("rsms.outcomes", type=ExchangeType.FANOUT, durable=True)
# Carrier events (shared/contracts.py): published by the dispatcher, which holds the carrier
# connection; fanned out so the ledger and the webhook sender each get their own copy.
RECEIPTS_EXCHANGE = RabbitExchange("rsms.receipts", type=ExchangeType.FANOUT, durable=True)
INBOUND_EXCHANGE = RabbitExchange("rsms.inbound", type=ExchangeType.FANOUT, durable=True)

# Deliveries of one message (requeues after a Redis or broker fault, a consumer lost
# mid-job) before the broker dead-letters it: far above what an outage's requeues reach
# (the dispatcher waits `RSMS_DISPATCHER_INFRASTRUCTURE_BACKOFF_SECONDS` before each), and
# explicit so RabbitMQ 4's default of 20 never applies unseen. A policy `delivery-limit`
# lower than this wins (the broker takes the smaller): the message is then dead-lettered,
# with reason `delivery_limit`, never dropped. A constant, not a setting: every service
# declares every queue, and declarations that differ in arguments are refused (406).
DELIVERY_LIMIT = 50


def work_queue_arguments(dead_letters: str, delivery_limit: int = DELIVERY_LIMIT) -> QuorumQueueArgs:
    """The arguments of a consumed quorum queue whose undeliverable messages go to `dead_letters`
    (`RabbitQueue` adds `x-queue-type`)."""
    return {
        "x-delivery-limit": delivery_limit,
        "x-dead-letter-exchange": "",
        "x-dead-letter-routing-key": dead_letters,
        "x-dead-letter-strategy": "at-least-once",
        "x-overflow": "reject-publish",  # at-least-once dead-lettering requires it
    }


def work_queue(name: str, *, dead_letters: str, delivery_limit: int = DELIVERY_LIMIT) -> RabbitQueue:
    return RabbitQueue(
        name,
        queue_type=QueueType.QUORUM,
        durable=True,
        arguments=work_queue_arguments(dead_letters, delivery_limit),
    )


def delay_queue(name: str, delay_ms: int, target: str) -> RabbitQueue:
    """Holds each message `delay_ms`, then dead-letters it to `target` (quorum queues support
    TTL and at-least-once dead-lettering since RabbitMQ 3.10)."""
    return RabbitQueue(
        name,
        queue_type=QueueType.QUORUM,
        durable=True,
        arguments={
            "x-message-ttl": delay_ms,
            "x-dead-letter-exchange": "",
            "x-dead-letter-routing-key": target,
            "x-dead-letter-strategy": "at-least-once",
            "x-overflow": "reject-publish",
        },
    )


def request_queue(name: str, ttl_ms: int, delivery_limit: int) -> RabbitQueue:
    """Requests whose caller waits for a reply: dropped once `ttl_ms` old, and after
    `delivery_limit` deliveries (a query that keeps failing its consumer), since a late
    answer reaches nobody. No dead-letter target: nothing there is worth keeping."""
    return RabbitQueue(
        name,
        queue_type=QueueType.QUORUM,
        durable=True,
        arguments={"x-message-ttl": ttl_ms, "x-delivery-limit": delivery_limit},
    )


def holding_queue(name: str) -> RabbitQueue:
    """Kept for an operator; read by confirmed copy, never by requeue (see the module doc)."""
    return RabbitQueue(name, queue_type=QueueType.QUORUM, durable=True)


# The dispatcher's give-ups (shared.contracts.DeadLetter) and the jobs the broker dead-lettered
# at the delivery limit (the job as it was, with `x-death` headers): `rsms dlq` reads both.
DEAD_LETTER_QUEUE = holding_queue("rsms.dispatch.dead")
DISPATCH_QUEUE = work_queue("rsms.dispatch.jobs", dead_letters=DEAD_LETTER_QUEUE.name)
# Events the ledger cannot record (malformed, unknown schema version, header `x-rsms-reason`)
# and events the broker dead-lettered at the delivery limit, kept for an operator.
LEDGER_DEAD_LETTER_QUEUE = holding_queue("rsms.ledger.dead")
LEDGER_ACCEPTED_QUEUE = work_queue("rsms.ledger.accepted", dead_letters=LEDGER_DEAD_LETTER_QUEUE.name)
LEDGER_OUTCOMES_QUEUE = work_queue("rsms.ledger.outcomes", dead_letters=LEDGER_DEAD_LETTER_QUEUE.name)
# Queries from ingest and the CLI, answered over direct reply-to. Quorum like the rest: a
# classic queue lives on the node that declared it, and while that node was down every
# service's declaration failed (`NOT_FOUND - home node ... of durable queue`), so none
# could start anywhere. A query is worth nothing once its caller gave up: each carries its
# caller's wait as `expiration`, and the queue's TTL drops whatever outlived every caller's
# wait (`QUERY_TTL_MS`), so queries asked while no ledger runs do not pile up.
QUERY_TTL_MS = 120_000
QUERY_DELIVERY_LIMIT = 5
LEDGER_QUERIES_QUEUE = request_queue("rsms.ledger.queries", QUERY_TTL_MS, QUERY_DELIVERY_LIMIT)

LEDGER_RECEIPTS_QUEUE = work_queue("rsms.ledger.receipts", dead_letters=LEDGER_DEAD_LETTER_QUEUE.name)
# Receipts nobody matched, kept for an operator (`rsms receipts unmatched`), and pending
# receipts the broker dead-lettered at the delivery limit (same body, with `x-death`).
RECEIPTS_UNMATCHED_QUEUE = holding_queue("rsms.receipts.unmatched")
LEDGER_INBOUND_QUEUE = work_queue("rsms.ledger.inbound", dead_letters=LEDGER_DEAD_LETTER_QUEUE.name)
# A receipt that came before the dispatcher recorded its part's carrier id (submit_sm_resp
# and deliver_sm race on an SMPP bind) waits here, not in a sleeping handler.
RECEIPTS_PENDING_QUEUE = work_queue("rsms.receipts.pending", dead_letters=RECEIPTS_UNMATCHED_QUEUE.name)
RECEIPT_RETRY_DELAY_MS = 1_000
RECEIPTS_RETRY_QUEUE = delay_queue("rsms.receipts.retry", RECEIPT_RETRY_DELAY_MS, RECEIPTS_PENDING_QUEUE.name)

# The webhook sender's own copy of every outcome, receipt and inbound message (the
# exchanges fan out), so a slow receiver delays nothing the ledger or the dispatcher does;
# copied only while some project has a webhook (`bind_webhook_queues`).
# Deliveries given up on (`WebhookDeadLetter`) and events the broker dead-lettered at the
# delivery limit (as they were, with `x-death`): `rsms webhooks list|replay` reads both.
WEBHOOK_DEAD_LETTER_QUEUE = holding_queue("rsms.webhooks.dead")
WEBHOOK_OUTCOMES_QUEUE = work_queue("rsms.webhooks.outcomes", dead_letters=WEBHOOK_DEAD_LETTER_QUEUE.name)
WEBHOOK_RECEIPTS_QUEUE = work_queue("rsms.webhooks.receipts", dead_letters=WEBHOOK_DEAD_LETTER_QUEUE.name)
WEBHOOK_INBOUND_QUEUE = work_queue("rsms.webhooks.inbound", dead_letters=WEBHOOK_DEAD_LETTER_QUEUE.name)
# Deliveries back from a webhook delay queue, to be tried again.
WEBHOOK_RETRIES_QUEUE = work_queue("rsms.webhooks.retries", dead_letters=WEBHOOK_DEAD_LETTER_QUEUE.name)


def webhook_retry_queue(delay_ms: int) -> RabbitQueue:
    """A delay queue: holds a webhook delivery for `delay_ms`, then dead-letters it to the retries queue."""
    return delay_queue(f"rsms.webhooks.retry.{delay_ms}ms", delay_ms, WEBHOOK_RETRIES_QUEUE.name)


# Exponential backoff: attempt n waits RETRY_DELAYS_MS[n-1] (the last one repeats).
RETRY_DELAYS_MS: tuple[int, ...] = (1_000, 5_000, 25_000, 120_000, 600_000)


def retry_queue(delay_ms: int) -> RabbitQueue:
    """A delay queue: holds a job for `delay_ms`, then dead-letters it to the dispatch queue."""
    return delay_queue(f"rsms.dispatch.retry.{delay_ms}ms", delay_ms, DISPATCH_QUEUE.name)


def topology_queues(retry_delays_ms: tuple[int, ...] = RETRY_DELAYS_MS) -> list[RabbitQueue]:
    """Every queue `declare_topology` declares (`rsms migrate-topology` checks each)."""
    return [
        DISPATCH_QUEUE,
        LEDGER_ACCEPTED_QUEUE,
        LEDGER_OUTCOMES_QUEUE,
        LEDGER_RECEIPTS_QUEUE,
        LEDGER_INBOUND_QUEUE,
        RECEIPTS_PENDING_QUEUE,
        RECEIPTS_RETRY_QUEUE,
        RECEIPTS_UNMATCHED_QUEUE,
        DEAD_LETTER_QUEUE,
        LEDGER_QUERIES_QUEUE,
        LEDGER_DEAD_LETTER_QUEUE,
        *(retry_queue(delay) for delay in sorted(set(retry_delays_ms))),
    ]


def webhook_queues(retry_delays_ms: tuple[int, ...]) -> list[RabbitQueue]:
    """Every queue `declare_webhook_queues` declares: `rsms migrate-topology` checks those
    that exist (it never creates them: see `declare_webhook_queues`)."""
    return [
        WEBHOOK_OUTCOMES_QUEUE,
        WEBHOOK_RECEIPTS_QUEUE,
        WEBHOOK_INBOUND_QUEUE,
        WEBHOOK_RETRIES_QUEUE,
        WEBHOOK_DEAD_LETTER_QUEUE,
        *(webhook_retry_queue(delay) for delay in sorted(set(retry_delays_ms))),
    ]


async def declare_topology(broker: RabbitBroker, retry_delays_ms: tuple[int, ...] = RETRY_DELAYS_MS) -> None:
    accepted = await broker.declare_exchange(ACCEPTED_EXCHANGE)
    outcomes = await broker.declare_exchange(OUTCOMES_EXCHANGE)
    for queue in (DISPATCH_QUEUE, LEDGER_ACCEPTED_QUEUE):
        declared = await broker.declare_queue(queue)
        await declared.bind(accepted)
    ledger_outcomes = await broker.declare_queue(LEDGER_OUTCOMES_QUEUE)
    await ledger_outcomes.bind(outcomes)
    receipts = await broker.declare_exchange(RECEIPTS_EXCHANGE)
    inbound = await broker.declare_exchange(INBOUND_EXCHANGE)
    ledger_receipts = await broker.declare_queue(LEDGER_RECEIPTS_QUEUE)
    await ledger_receipts.bind(receipts)
    ledger_inbound = await broker.declare_queue(LEDGER_INBOUND_QUEUE)
    await ledger_inbound.bind(inbound)
    for queue in (RECEIPTS_PENDING_QUEUE, RECEIPTS_RETRY_QUEUE, RECEIPTS_UNMATCHED_QUEUE):
        await broker.declare_queue(queue)
    await broker.declare_queue(DEAD_LETTER_QUEUE)
    await broker.declare_queue(LEDGER_QUERIES_QUEUE)
    await broker.declare_queue(LEDGER_DEAD_LETTER_QUEUE)
    for delay in sorted(set(retry_delays_ms)):
        await broker.declare_queue(retry_queue(delay))


# The webhook sender's event queues and the exchanges they copy (`declare_webhook_queues`
# declares them, `bind_webhook_queues` binds them; keep `webhook_queues` in step).
WEBHOOK_EVENT_SOURCES: tuple[tuple[RabbitQueue, RabbitExchange], ...] = (
    (WEBHOOK_OUTCOMES_QUEUE, OUTCOMES_EXCHANGE),
    (WEBHOOK_RECEIPTS_QUEUE, RECEIPTS_EXCHANGE),
    (WEBHOOK_INBOUND_QUEUE, INBOUND_EXCHANGE),
)


async def declare_webhook_queues(broker: RabbitBroker, retry_delays_ms: tuple[int, ...]) -> None:
    """The webhook sender's queues, declared by the sender itself, so a gateway that never
    runs it (benchmarks, a deployment without webhooks) does not pile up copies nobody
    reads. From its first start on they are durable. Declaring binds nothing: the event
    queues are bound by `bind_webhook_queues`, only while some project has a webhook."""
    for queue, exchange in WEBHOOK_EVENT_SOURCES:
        await broker.declare_queue(queue)
        await broker.declare_exchange(exchange)
    await broker.declare_queue(WEBHOOK_RETRIES_QUEUE)
    await broker.declare_queue(WEBHOOK_DEAD_LETTER_QUEUE)
    for delay in sorted(set(retry_delays_ms)):
        await broker.declare_queue(webhook_retry_queue(delay))


async def bind_webhook_queues(broker: RabbitBroker, *, bound: bool) -> None:
    """Bind (`bound`) or unbind the webhook sender's event queues to the exchanges they copy.

    Idempotent both ways: binding a bound queue and unbinding an unbound one change nothing
    (the broker answers OK to either), so any number of senders may assert it at every tick.
    The routing key is the queue's name, the one every version bound them with (a fanout
    ignores it, but an unbind must name the binding exactly). Not robust (aio-pika would
    re-create a binding on reconnect from its memory, undoing a later unbind by another
    sender): the broker keeps durable bindings itself, and the caller asserts the state again
    at its next tick. Queues and exchanges must be declared (`declare_webhook_queues`)."""
    for queue, exchange in WEBHOOK_EVENT_SOURCES:
        declared = await broker.declare_queue(queue)
        source = await broker.declare_exchange(exchange)
        if bound:
            await declared.bind(source, routing_key=queue.name, robust=False)
        else:
            await declared.unbind(source, routing_key=queue.name)
