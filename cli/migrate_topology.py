"""`rsms migrate-topology`: moves queues declared by an older version to today's arguments.

Queue arguments cannot change in place: a service declaring a queue with arguments other
than the broker has is refused (406 PRECONDITION_FAILED), and so cannot start. For each
queue in shared/topology.py this tries the declaration the running code makes; a refused
one is migrated: its messages are moved (each copy confirmed before the original is
acknowledged, cli/queue_moves.py) to a holding queue `<name>.migrating`, the queue is
deleted, the whole topology declared again (queues, bindings), and the messages moved back.

Nothing is lost at any step: an interrupted run leaves the messages on `<name>.migrating`
(never on no queue), and the next run moves them back. A second run finds nothing to do.
The services must be stopped while it runs: a consumer would take messages mid-move, and a
publisher would find the queue gone; the command refuses while a queue has consumers.

The webhook sender's queues are checked when they exist, and never created: the sender
declares them itself (shared/topology.py, `declare_webhook_queues`), so a gateway that
never ran it gets none from this command either. Where they exist, their event queues are
left bound to the exchanges iff the accounts file (`RSMS_ACCOUNTS_FILE`, read as the sender
reads it) gives some project a webhook, the rule the sender asserts itself
(services/webhooks/bindings.py): a re-declared queue has lost its bindings, and a gateway
with webhooks must not drop events for them between the migration and the sender's start.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import click
from aio_pika.abc import AbstractChannel, AbstractConnection
from aio_pika.exceptions import ChannelNotFoundEntity, ChannelPreconditionFailed
from faststream.rabbit import RabbitQueue

from cli.queue_moves import move_all, ready_count
from cli.table import json_option, print_table
from shared.rabbitmq import cluster_broker, connect_to_any
from shared.settings import ServiceSettings
from shared.topology import (
    RETRY_DELAYS_MS,
    bind_webhook_queues,
    declare_topology,
    declare_webhook_queues,
    holding_queue,
    retry_queue,
    topology_queues,
    webhook_queues,
    webhook_retry_queue,
)

MIGRATING_SUFFIX = ".migrating"


class ServicesRunning(click.ClickException):
    exit_code = 1


@dataclass(slots=True)
class QueueState:
    name: str
    exists: bool
    current: bool  # declared with the arguments the running code wants
    consumers: int
    waiting: int  # messages on it now
    parked: int | None  # messages on `<name>.migrating` (an interrupted run); None: no such queue

    @property
    def needs_work(self) -> bool:
        return (self.exists and not self.current) or self.parked is not None


@dataclass(slots=True)
class QueueResult:
    name: str
    moved: int
    status: str


async def _declared(connection: AbstractConnection, name: str) -> tuple[int, int] | None:
    """(messages, consumers) of `name`, or None if there is no such queue. A passive declare
    of a missing queue closes its channel, so each check gets a channel of its own."""
    channel = await connection.channel()
    try:
        declared = await channel.declare_queue(name, passive=True)
    except ChannelNotFoundEntity:
        return None
    result = declared.declaration_result
    await channel.close()
    return int(result.message_count or 0), int(result.consumer_count or 0)


async def _is_current(connection: AbstractConnection, queue: RabbitQueue) -> bool:
    """The broker's own comparison: it refuses a declaration whose arguments differ (406)."""
    channel = await connection.channel()
    try:
        await channel.declare_queue(queue.name, durable=queue.durable, arguments=dict(queue.arguments or {}))
    except ChannelPreconditionFailed:
        return False
    await channel.close()
    return True


async def inspect(connection: AbstractConnection, queues: list[RabbitQueue]) -> list[QueueState]:
    states = []
    for queue in queues:
        found = await _declared(connection, queue.name)
        parked = await _declared(connection, queue.name + MIGRATING_SUFFIX)
        states.append(
            QueueState(
                name=queue.name,
                exists=found is not None,
                current=found is not None and await _is_current(connection, queue),
                consumers=found[1] if found else 0,
                waiting=found[0] if found else 0,
                parked=parked[0] if parked else None,
            )
        )
    return states


async def migrate(
    amqp_url: str,
    queues: list[RabbitQueue],
    retry_delays_ms: tuple[int, ...],
    webhook_delays_ms: tuple[int, ...] | None = None,
    webhook_events_bound: bool = False,
) -> list[QueueResult]:
    """Migrates `queues`; re-declares the topology, and the webhook sender's queues with
    delay queues `webhook_delays_ms` unless None (the sender never ran here), their event
    queues bound to the exchanges iff `webhook_events_bound`."""
    connection = await connect_to_any(amqp_url)
    try:
        states = await inspect(connection, queues)
        busy = [s.name for s in states if s.needs_work and s.consumers]
        if busy:
            raise ServicesRunning(f"stop the services first: {', '.join(busy)} has consumers")
        channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
        out: dict[str, int] = {}
        for state in states:
            if state.exists and not state.current:
                holding = holding_queue(state.name + MIGRATING_SUFFIX)
                if state.parked is None:  # else an interrupted run's, whatever its arguments
                    await channel.declare_queue(holding.name, durable=True, arguments=dict(holding.arguments or {}))
                out[state.name] = await move_all(channel, state.name, holding.name)
                await _delete_empty(channel, state.name)
        await channel.close()
        await _declare_topology(amqp_url, retry_delays_ms, webhook_delays_ms, webhook_events_bound)
        # A fresh channel: RabbitMQ 3.10's channel keeps the state of a queue it published to,
        # and publishing to a classic queue re-declared as quorum under the same name on that
        # channel crashes it (function_clause in rabbit_classic_queue:update).
        channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
        results = []
        for state in states:
            moved = 0
            if state.needs_work:
                parked = state.name + MIGRATING_SUFFIX
                moved = await move_all(channel, parked, state.name)
                await _delete_empty(channel, parked)
            status = _status(state, moved_out=out.get(state.name, 0), moved_back=moved)
            results.append(QueueResult(state.name, moved, status))
        return results
    finally:
        await connection.close()


async def _delete_empty(channel: AbstractChannel, name: str) -> None:
    """Quorum queues refuse `queue.delete` with if-empty, so: count, then delete. Only a
    publisher running meanwhile (none may) could slip a message in between."""
    if (left := await ready_count(channel, name)) != 0:
        raise click.ClickException(f"{name} still holds {left} message(s) after the move: is a service running?")
    await channel.queue_delete(name)


def _status(state: QueueState, *, moved_out: int, moved_back: int) -> str:
    if not state.exists and state.parked is None:
        return "declared"
    if not state.needs_work:
        return "up to date"
    expected = moved_out + (state.parked or 0)
    if moved_back != expected:
        # Only a publisher or consumer running meanwhile makes these differ (none may run).
        return f"migrated, {expected} taken but {moved_back} moved back: check {state.name}{MIGRATING_SUFFIX}"
    return "migrated" if state.exists and not state.current else "resumed"


async def _declare_topology(
    amqp_url: str,
    retry_delays_ms: tuple[int, ...],
    webhook_delays_ms: tuple[int, ...] | None,
    webhook_events_bound: bool,
) -> None:
    broker = cluster_broker(amqp_url)
    await broker.connect()
    try:
        await declare_topology(broker, retry_delays_ms=retry_delays_ms)
        if webhook_delays_ms is not None:
            await declare_webhook_queues(broker, webhook_delays_ms)
            await bind_webhook_queues(broker, bound=webhook_events_bound)
    finally:
        await broker.stop()


async def plan(amqp_url: str, queues: list[RabbitQueue]) -> list[QueueState]:
    connection = await connect_to_any(amqp_url)
    try:
        return await inspect(connection, queues)
    finally:
        await connection.close()


def _retry_delays() -> tuple[int, ...]:
    """The dispatcher's configured delays: its retry queues are the ones it declares."""
    from services.dispatcher.settings import DispatcherSettings

    return tuple(sorted(set(DispatcherSettings().dispatcher_retry_delays_ms)))


def _webhook_delays() -> tuple[int, ...]:
    """Every delay the webhook sender may have declared a delay queue for: the configured
    ones and the defaults (a deployment may have run with either)."""
    from services.webhooks.settings import WebhooksSettings

    default = WebhooksSettings.model_fields["webhooks_retry_delays_ms"].default
    return tuple(sorted({*WebhooksSettings().webhooks_retry_delays_ms, *default}))


def _webhook_events_wanted() -> tuple[bool, int]:
    """Whether the sender's event queues are to be bound, as the sender decides it from the
    accounts file it reads (`events_wanted`), and how many projects have a webhook there."""
    from services.webhooks.bindings import events_wanted
    from services.webhooks.endpoints import webhook_endpoints
    from services.webhooks.settings import WebhooksSettings
    from shared.accounts import AccountsError, load_accounts

    path = WebhooksSettings().accounts_file
    try:
        endpoints = webhook_endpoints(load_accounts(path))
        return events_wanted(endpoints), len(endpoints)
    except AccountsError as error:
        # Guessing either way could drop events (unbound) or keep a cost (bound): ask.
        raise click.ClickException(f"{path}: {error}; fix the accounts file first") from error


def existing_webhook_queues(
    amqp_url: str, delays_ms: tuple[int, ...]
) -> tuple[list[RabbitQueue], tuple[int, ...] | None]:
    """The webhook queues to check and the delays to re-declare: none and None where the
    sender never ran (no queue of it exists); else all its queues but the delay queues,
    and the delay queues that exist."""
    candidates = webhook_queues(delays_ms)
    found = asyncio.run(plan(amqp_url, candidates))
    there = {state.name for state in found if state.exists or state.parked is not None}
    if not there:
        return [], None
    kept = tuple(d for d in delays_ms if webhook_retry_queue(d).name in there)
    return webhook_queues(kept), kept


@click.command("migrate-topology")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@json_option
def migrate_topology(yes: bool, as_json: bool) -> None:
    """Re-declare queues whose arguments changed (quorum, delivery limit, dead-letter target),
    moving their messages so none is lost. Stop every service first. Safe to run again."""
    amqp_url = ServiceSettings().amqp_url
    configured = _retry_delays()
    # A retry queue of a default delay the dispatcher no longer uses is migrated too if it
    # exists (it may hold jobs), and not created if it does not.
    unused = [d for d in RETRY_DELAYS_MS if d not in configured]
    found = asyncio.run(plan(amqp_url, [retry_queue(d) for d in unused]))
    kept = (d for d, state in zip(unused, found, strict=True) if state.exists or state.parked is not None)
    delays = tuple(sorted({*configured, *kept}))
    webhooks, webhook_delays = existing_webhook_queues(amqp_url, _webhook_delays())
    events_bound, with_webhook = _webhook_events_wanted() if webhook_delays is not None else (False, 0)
    queues = topology_queues(delays) + webhooks
    pending = [s for s in asyncio.run(plan(amqp_url, queues)) if s.needs_work]
    if pending and not yes:
        waiting = sum(s.waiting + (s.parked or 0) for s in pending)
        click.confirm(
            f"Re-declare {len(pending)} queue(s), moving {waiting} message(s)? Every service must be stopped.",
            abort=True,
        )
    results = asyncio.run(migrate(amqp_url, queues, delays, webhook_delays, events_bound))
    print_table(
        ["queue", "moved", "status"],
        [[r.name, r.moved, r.status] for r in results],
        empty="No queues.",
        as_json=as_json,
    )
    if webhook_delays is not None and not as_json:
        click.echo(
            f"Webhook event queues bound to their exchanges: {with_webhook} project(s) have a webhook."
            if events_bound
            else "Webhook event queues not bound: no project has a webhook (the sender binds them once one has)."
        )
