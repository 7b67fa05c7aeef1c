"""`rsms webhooks`: run the webhook sender, or look at and replay what it gave up on.

rsms webhooks                          run it (RSMS_WEBHOOKS_*; `rsms up` does)
rsms webhooks list [--json]            dead-lettered deliveries: project, events, attempts, last error
rsms webhooks replay [--project P]     send them again once the receiver is fixed

`rsms.webhooks.dead` holds two kinds of message: deliveries still not taken after the last
attempt (RSMS_WEBHOOKS_MAX_ATTEMPTS), a `WebhookDeadLetter`; and events or deliveries the
broker dead-lettered itself from one of the sender's queues at the delivery limit (as they
were, with `x-death`). `list` takes nothing off the queue; `replay` puts a give-up back on
the sender's retries queue with its attempts reset, and a broker dead letter back on the
queue it came from, as it was. Reading never requeues (cli/queue_moves.py): the queue is a
quorum queue, and RabbitMQ 4 or a policy counts each requeue against its delivery limit.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

import click
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage, AbstractQueue
from pydantic import ValidationError

from cli.queue_moves import last_death, move_to, on_queue, peek, replace_with, take
from cli.table import json_option, print_table
from shared.contracts import WebhookDeadLetter, WebhookDelivery
from shared.settings import ServiceSettings
from shared.topology import WEBHOOK_DEAD_LETTER_QUEUE, WEBHOOK_RETRIES_QUEUE, webhook_queues

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class WebhookDeadEntry:
    """One message on the webhook dead-letter queue, whichever kind, as `list` shows it."""

    reason: str
    dead_lettered_at: datetime | None
    project: str | None
    events: int | None
    attempts: int | None
    detail: str
    # Where `replay` sends it and what: None, not replayable.
    replay_to: str | None
    replay_body: bytes | None = None  # None: the message itself, as it was


def _is_webhook_queue(name: object) -> bool:
    """Only the sender's own queues take a replayed broker dead letter (their names do not
    depend on the configured delays, except the delay queues', which dead-letter nothing
    here: their target is the retries queue)."""
    return isinstance(name, str) and name in {q.name for q in webhook_queues(())}


def read_entry(body: bytes, headers: Mapping[str, Any]) -> WebhookDeadEntry:
    """A `WebhookDeadLetter` the sender published, or a message the broker dead-lettered."""
    try:
        letter: WebhookDeadLetter | None = WebhookDeadLetter.model_validate_json(body)
    except ValidationError:
        letter = None
    if letter is not None:
        delivery = letter.delivery
        replayed = (
            delivery.model_copy(update={"attempts": 0, "last_error": None, "replay": delivery.replay + 1})
            if delivery
            else None
        )
        return WebhookDeadEntry(
            reason=letter.reason,
            dead_lettered_at=letter.dead_lettered_at,
            project=letter.project,
            events=len(delivery.events) if delivery else None,
            attempts=delivery.attempts if delivery else None,
            detail=letter.detail,
            replay_to=WEBHOOK_RETRIES_QUEUE.name if replayed else None,
            replay_body=replayed.model_dump_json().encode() if replayed else None,
        )
    death = last_death(headers)
    if death is not None:
        try:
            delivery = WebhookDelivery.model_validate_json(body)
        except ValidationError:
            delivery = None
        when = death.get("time")
        source = death.get("queue")
        return WebhookDeadEntry(
            reason=str(death.get("reason", "unknown")),
            dead_lettered_at=when if isinstance(when, datetime) else None,
            project=delivery.project if delivery else _project_of(body),
            events=len(delivery.events) if delivery else None,
            attempts=delivery.attempts if delivery else None,
            detail=f"dead-lettered by the broker from {source or '?'} ({death.get('count', 1)} time(s))",
            replay_to=source if _is_webhook_queue(source) else None,
        )
    return WebhookDeadEntry("unreadable", None, None, None, None, "not a dead letter this version knows", None)


def _project_of(body: bytes) -> str | None:
    """The `project` of an event the broker dead-lettered (outcome, receipt, inbound)."""
    try:
        decoded = json.loads(body)
    except ValueError:
        return None
    project = decoded.get("project") if isinstance(decoded, dict) else None
    return project if isinstance(project, str) else None


def _run(work: Callable[[AbstractChannel, AbstractQueue], Awaitable[T]]) -> T:
    return asyncio.run(
        on_queue(
            ServiceSettings().amqp_url,
            WEBHOOK_DEAD_LETTER_QUEUE.name,
            work,
            missing="no webhook queues on this broker: the webhook sender never ran",
        )
    )


def _entries(taken: list[AbstractIncomingMessage]) -> list[WebhookDeadEntry]:
    return [read_entry(message.body, message.headers or {}) for message in taken]


def _row(index: int, entry: WebhookDeadEntry) -> list[Any]:
    detail = entry.detail if len(entry.detail) <= 80 else entry.detail[:77] + "..."
    return [index, entry.dead_lettered_at, entry.project, entry.reason, entry.events, entry.attempts, detail]


@click.group("webhooks", invoke_without_command=True)
@click.pass_context
def webhooks(ctx: click.Context) -> None:
    """Run the webhook sender (no subcommand), or inspect and replay its dead letters."""
    if ctx.invoked_subcommand is None:
        from services.webhooks.main import run

        run()


@webhooks.command("list")
@click.option("--project", default=None, help="Only this project's.")
@click.option("--limit", type=int, default=None, help="Look at most at this many.")
@json_option
def list_dead_letters(project: str | None, limit: int | None, as_json: bool) -> None:
    """Deliveries given up on, oldest first; nothing is taken off the queue."""

    async def work(channel: AbstractChannel, queue: AbstractQueue) -> list[list[Any]]:
        taken = await peek(channel, queue)
        return [
            _row(i, entry)
            for i, entry in enumerate(_entries(taken)[:limit], 1)
            if project is None or entry.project == project
        ]

    print_table(
        ["#", "dead-lettered (UTC)", "project", "reason", "events", "attempts", "last error"],
        _run(work),
        empty="No webhook deliveries are dead-lettered.",
        as_json=as_json,
    )


@webhooks.command("replay")
@click.option("--project", default=None, help="Only this project's deliveries.")
@click.option("--limit", type=int, default=None, help="Look at most at this many dead letters.")
def replay(project: str | None, limit: int | None) -> None:
    """Send dead-lettered deliveries again, attempts reset. Unreadable ones stay on the queue."""

    async def work(channel: AbstractChannel, queue: AbstractQueue) -> tuple[int, int, int]:
        replayed = events = skipped = 0
        taken = await take(channel, queue)
        for looked, (message, entry) in enumerate(zip(taken, _entries(taken), strict=True)):
            chosen = looked < (limit if limit is not None else len(taken))
            if chosen and entry.replay_to is None:
                skipped += 1
            wanted = project is None or entry.project == project
            if not chosen or entry.replay_to is None or not wanted:
                await move_to(channel, message, queue.name)  # kept, at the tail, in order
                continue
            if entry.replay_body is None:
                await move_to(channel, message, entry.replay_to)  # as it was, `x-death` included
            else:
                await replace_with(channel, message, entry.replay_body, entry.replay_to)
            replayed += 1
            events += entry.events or 0
        return replayed, events, skipped

    replayed_deliveries, replayed_events, skipped = _run(work)
    click.echo(f"Replayed {replayed_deliveries} delivery(ies), {replayed_events} event(s).")
    if skipped:
        click.echo(f"Left {skipped} dead letter(s) that cannot be replayed on the queue (see `rsms webhooks list`).")
