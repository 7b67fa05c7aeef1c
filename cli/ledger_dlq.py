"""`rsms ledger-dlq list|replay`: the ledger's dead-letter queue, `rsms.ledger.dead`.

It holds two kinds of message, each the event as it was published (an accepted job, an
outcome, a receipt, an inbound message). Events the ledger refused to record (malformed,
a schema version it does not know, a value out of range), with the reason in header
`x-rsms-reason`. And events the broker dead-lettered itself, with `x-death`: an event
delivered `DELIVERY_LIMIT` times without being acknowledged (reason `delivery_limit`, e.g.
requeued through a long ClickHouse outage, or a lower limit set by policy).

`replay` sends them back to the ledger queue they came from: the queue `x-death` names, or
for a refused event the queue its kind is consumed from (the ledger's header names the
reason only). The ledger's rows are keyed by event, so a replayed event already recorded
is not counted twice. A refused event is refused again unless the ledger was fixed or
upgraded meanwhile. Reading never requeues (cli/queue_moves.py): the queue is a quorum
queue, and RabbitMQ 4 or a policy would count each requeue against its delivery limit.
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

from cli.queue_moves import last_death, move_to, on_queue, peek, take
from cli.table import json_option, print_table
from shared.settings import ServiceSettings
from shared.topology import (
    LEDGER_ACCEPTED_QUEUE,
    LEDGER_DEAD_LETTER_QUEUE,
    LEDGER_INBOUND_QUEUE,
    LEDGER_OUTCOMES_QUEUE,
    LEDGER_RECEIPTS_QUEUE,
)

T = TypeVar("T")
REASON_HEADER = "x-rsms-reason"
LEDGER_QUEUES = frozenset(
    q.name for q in (LEDGER_ACCEPTED_QUEUE, LEDGER_OUTCOMES_QUEUE, LEDGER_RECEIPTS_QUEUE, LEDGER_INBOUND_QUEUE)
)


@dataclass(frozen=True, slots=True)
class LedgerDeadEntry:
    """One message on the ledger's dead-letter queue, as `list` shows it."""

    reason: str
    dead_lettered_at: datetime | None
    kind: str | None  # accepted, outcome, receipt, inbound; None: not recognisable
    event_id: str | None  # the message id of an accepted job, else the event id
    detail: str
    replay_to: str | None  # the ledger queue it goes back to; None: not replayable


def event_kind(body: bytes) -> tuple[str, str | None] | None:
    """(kind, id) of an event body, by the fields only that kind has; None: not a JSON
    object of any. By fields, not by the contracts' models: a body the ledger refused does
    not validate, yet its kind is still plain (a schema version this CLI does not know)."""
    try:
        decoded = json.loads(body)
    except ValueError:
        return None
    if not isinstance(decoded, dict):
        return None
    event_id = decoded.get("event_id")
    if "outcomes" in decoded:
        return "outcome", _text(event_id)
    if "recipients" in decoded:
        return "accepted", _text(decoded.get("message_id"))
    if "final" in decoded:
        return "receipt", _text(event_id)
    if "destination" in decoded:
        return "inbound", _text(event_id)
    return None


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None


KIND_QUEUES = {
    "accepted": LEDGER_ACCEPTED_QUEUE.name,
    "outcome": LEDGER_OUTCOMES_QUEUE.name,
    "receipt": LEDGER_RECEIPTS_QUEUE.name,
    "inbound": LEDGER_INBOUND_QUEUE.name,
}


def read_entry(body: bytes, headers: Mapping[str, Any]) -> LedgerDeadEntry:
    """What a dead letter is, why it is there and where `replay` would send it."""
    found = event_kind(body)
    kind, event_id = found if found else (None, None)
    death = last_death(headers)
    if death is not None:
        source = death.get("queue")
        when = death.get("time")
        return LedgerDeadEntry(
            reason=str(death.get("reason", "unknown")),
            dead_lettered_at=when if isinstance(when, datetime) else None,
            kind=kind,
            event_id=event_id,
            detail=f"dead-lettered by the broker from {source or '?'} ({death.get('count', 1)} time(s))",
            replay_to=source if source in LEDGER_QUEUES else None,
        )
    refused = headers.get(REASON_HEADER)
    if refused is not None:
        return LedgerDeadEntry(
            reason="refused",
            dead_lettered_at=None,
            kind=kind,
            event_id=event_id,
            detail=str(refused),
            replay_to=KIND_QUEUES[kind] if kind else None,
        )
    return LedgerDeadEntry("unreadable", None, kind, event_id, "not a dead letter this version knows", None)


def _run(work: Callable[[AbstractChannel, AbstractQueue], Awaitable[T]]) -> T:
    return asyncio.run(
        on_queue(
            ServiceSettings().amqp_url,
            LEDGER_DEAD_LETTER_QUEUE.name,
            work,
            missing="no ledger queues on this broker: no service ever started on it",
        )
    )


def _entries(taken: list[AbstractIncomingMessage]) -> list[LedgerDeadEntry]:
    return [read_entry(message.body, message.headers or {}) for message in taken]


def _row(index: int, entry: LedgerDeadEntry) -> list[Any]:
    detail = entry.detail if len(entry.detail) <= 80 else entry.detail[:77] + "..."
    return [index, entry.dead_lettered_at, entry.reason, entry.kind, entry.event_id, entry.replay_to, detail]


@click.group("ledger-dlq")
def ledger_dlq() -> None:
    """Inspect or replay the events the ledger could not record (RSMS_AMQP_URL)."""


@ledger_dlq.command("list")
@click.option("--limit", type=int, default=None, help="Show at most this many.")
@json_option
def list_dead_letters(limit: int | None, as_json: bool) -> None:
    """Show dead-lettered events, oldest first; nothing is taken off the queue."""

    async def work(channel: AbstractChannel, queue: AbstractQueue) -> list[list[Any]]:
        taken = await peek(channel, queue)
        return [_row(i, entry) for i, entry in enumerate(_entries(taken)[:limit], 1)]

    print_table(
        ["#", "dead-lettered (UTC)", "reason", "kind", "id", "replays to", "detail"],
        _run(work),
        empty="The ledger's dead-letter queue is empty.",
        as_json=as_json,
    )


@ledger_dlq.command("replay")
@click.option("--id", "event_ids", multiple=True, help="Only these events (the `id` column; repeatable).")
@click.option("--limit", type=int, default=None, help="Look at most at this many dead letters.")
def replay(event_ids: tuple[str, ...], limit: int | None) -> None:
    """Send dead-lettered events back to the ledger queue they came from, as they were.
    Events of no recognisable kind stay on the queue."""
    wanted = set(event_ids)

    async def work(channel: AbstractChannel, queue: AbstractQueue) -> tuple[int, int]:
        replayed = skipped = 0
        taken = await take(channel, queue)
        for looked, (message, entry) in enumerate(zip(taken, _entries(taken), strict=True)):
            chosen = looked < (limit if limit is not None else len(taken))
            if chosen and entry.replay_to is None:
                skipped += 1
            if not chosen or entry.replay_to is None or (wanted and entry.event_id not in wanted):
                await move_to(channel, message, queue.name)  # kept, at the tail, in order
                continue
            await move_to(channel, message, entry.replay_to)
            replayed += 1
        return replayed, skipped

    replayed, skipped = _run(work)
    click.echo(f"Replayed {replayed} event(s).")
    if skipped:
        click.echo(f"Left {skipped} event(s) that cannot be replayed on the queue (see `rsms ledger-dlq list`).")
