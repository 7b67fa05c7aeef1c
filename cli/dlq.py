"""`rsms dlq list|replay|purge`: the dispatcher's dead-letter queue, for operators.

It holds two kinds of message. Jobs the dispatcher gave up on (a `DeadLetter`: recipients
still failing after the last attempt, outcome unknown, or a body that was not a valid job).
And jobs the broker dead-lettered itself, as they were, with `x-death` headers: a job
delivered `DELIVERY_LIMIT` times without being acknowledged (reason `delivery_limit`,
e.g. requeued through a long Redis outage, or a lower limit set by policy).

`list` looks without taking anything; `replay` sends replayable jobs back to the dispatch
queue (a give-up with its attempts reset, a broker dead letter as it was); `purge` drops
them all. Reading never requeues (cli/queue_moves.py): the queue is a quorum queue, and
RabbitMQ 4 or a policy would count each requeue against its delivery limit.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar
from uuid import UUID

import click
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage, AbstractQueue
from pydantic import ValidationError

from cli.queue_moves import last_death, move_to, peek, ready_count, replace_with, take
from cli.table import json_option, print_table
from shared.contracts import DeadLetter, SmsJob, SmsJobBatch
from shared.rabbitmq import connect_to_any
from shared.settings import ServiceSettings
from shared.topology import DEAD_LETTER_QUEUE, DISPATCH_QUEUE

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class DeadLetterEntry:
    """One message on the dead-letter queue, whichever kind, as `list` shows it."""

    reason: str
    dead_lettered_at: datetime | None
    message_id: UUID | None
    attempts: int | None
    recipients: int | None
    detail: str
    # What `replay` publishes to the dispatch queue; None: not replayable.
    replay_body: bytes | None
    # A job the broker dead-lettered: replayed as the very message, `x-death` included, so
    # the dispatcher knows it was delivered before (job_reader.delivered_before).
    by_broker: bool = False


def read_entry(body: bytes, headers: Mapping[str, Any]) -> DeadLetterEntry:
    """A `DeadLetter` the dispatcher published, or a job the broker dead-lettered (`x-death`)."""
    try:
        letter = DeadLetter.model_validate_json(body)
    except ValidationError:
        letter = None
    if letter is not None:
        job = letter.job.model_copy(update={"attempt": 1, "replay": letter.job.replay + 1}) if letter.job else None
        return DeadLetterEntry(
            reason=letter.reason,
            dead_lettered_at=letter.dead_lettered_at,
            message_id=letter.message_id,
            attempts=letter.attempts,
            recipients=len(letter.job.recipients) if letter.job else None,
            detail=letter.detail,
            replay_body=job.model_dump_json().encode() if job else None,
        )
    # The most recent death (a job that went through a retry delay queue also carries that
    # queue's `expired` entry, and `x-first-death-reason` says expired).
    death = last_death(headers)
    if death is not None:
        try:
            sms = SmsJob.model_validate_json(body)
        except ValidationError:
            sms = None
        when = death.get("time")
        batch = _job_batch(body) if sms is None else None
        if batch is not None:
            # Ingest's group commit: several jobs in one message, replayed as they were.
            return DeadLetterEntry(
                reason=str(death.get("reason", "unknown")),
                dead_lettered_at=when if isinstance(when, datetime) else None,
                message_id=None,
                attempts=max(job.attempt for job in batch.jobs),
                recipients=sum(len(job.recipients) for job in batch.jobs),
                detail=f"a batch of {len(batch.jobs)} jobs, dead-lettered by the broker from "
                f"{death.get('queue', '?')} ({death.get('count', 1)} time(s))",
                replay_body=body,
                by_broker=True,
            )
        return DeadLetterEntry(
            reason=str(death.get("reason", "unknown")),
            dead_lettered_at=when if isinstance(when, datetime) else None,
            message_id=sms.message_id if sms else None,
            attempts=sms.attempt if sms else None,
            recipients=len(sms.recipients) if sms else None,
            detail=f"dead-lettered by the broker from {death.get('queue', '?')} ({death.get('count', 1)} time(s))",
            replay_body=body if sms else None,  # as it was: same attempt, same replay number
            by_broker=True,
        )
    return DeadLetterEntry("unreadable", None, None, None, None, "not a dead letter this version knows", None)


def _job_batch(body: bytes) -> SmsJobBatch | None:
    try:
        return SmsJobBatch.model_validate_json(body)
    except ValidationError:
        return None


def _run(work: Callable[[AbstractChannel, AbstractQueue], Awaitable[T]]) -> T:
    async def main() -> T:
        connection = await connect_to_any(ServiceSettings().amqp_url)
        try:
            channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
            queue = await channel.get_queue(DEAD_LETTER_QUEUE.name, ensure=True)
            return await work(channel, queue)
        finally:
            # Whatever was taken and not moved goes back to the queue (counts one delivery).
            await connection.close()

    return asyncio.run(main())


def _entries(taken: list[AbstractIncomingMessage]) -> list[DeadLetterEntry]:
    return [read_entry(message.body, message.headers or {}) for message in taken]


def _row(index: int, entry: DeadLetterEntry) -> list[Any]:
    detail = entry.detail if len(entry.detail) <= 80 else entry.detail[:77] + "..."
    return [
        index,
        entry.dead_lettered_at,
        entry.reason,
        entry.message_id,
        entry.attempts,
        entry.recipients,
        detail,
    ]


@click.group("dlq")
def dlq() -> None:
    """Inspect, replay or purge the dispatcher's dead-letter queue (RSMS_AMQP_URL)."""


@dlq.command("list")
@click.option("--limit", type=int, default=None, help="Show at most this many.")
@json_option
def list_dead_letters(limit: int | None, as_json: bool) -> None:
    """Show dead-lettered jobs, oldest first; nothing is taken off the queue."""

    async def work(channel: AbstractChannel, queue: AbstractQueue) -> list[list[Any]]:
        taken = await peek(channel, queue)
        return [_row(i, entry) for i, entry in enumerate(_entries(taken)[:limit], 1)]

    rows = _run(work)
    print_table(
        ["#", "dead-lettered (UTC)", "reason", "message id", "attempts", "recipients", "detail"],
        rows,
        empty="The dead-letter queue is empty.",
        as_json=as_json,
    )


@dlq.command("replay")
@click.option("--message-id", "message_ids", multiple=True, help="Only these messages (repeatable).")
@click.option("--limit", type=int, default=None, help="Look at most at this many dead letters.")
def replay(message_ids: tuple[str, ...], limit: int | None) -> None:
    """Send dead-lettered jobs back to the dispatcher.

    A job the dispatcher gave up on goes back with its attempts reset; only the recipients
    still unsent are in it, so nobody gets a message twice. A job the broker dead-lettered
    goes back as it was (same attempt): the dispatcher's send markers skip whoever it sent.
    Invalid jobs cannot be replayed and stay on the queue.
    """
    wanted = set(message_ids)

    async def work(channel: AbstractChannel, queue: AbstractQueue) -> tuple[int, int, int]:
        replayed = recipients = skipped = 0
        taken = await take(channel, queue)
        for looked, (message, entry) in enumerate(zip(taken, _entries(taken), strict=True)):
            chosen = looked < (limit if limit is not None else len(taken))
            if chosen and entry.replay_body is None:
                skipped += 1
            if not chosen or entry.replay_body is None or (wanted and str(entry.message_id) not in wanted):
                await move_to(channel, message, queue.name)  # kept, at the tail, in order
                continue
            if entry.by_broker:
                await move_to(channel, message, DISPATCH_QUEUE.name)
            else:
                await replace_with(channel, message, entry.replay_body, DISPATCH_QUEUE.name)
            replayed += 1
            recipients += entry.recipients or 0
        return replayed, recipients, skipped

    replayed_jobs, replayed_recipients, skipped = _run(work)
    click.echo(f"Replayed {replayed_jobs} job(s), {replayed_recipients} recipient(s).")
    if skipped:
        click.echo(f"Left {skipped} invalid job(s) on the queue: not replayable (see `rsms dlq list`).")


@dlq.command("purge")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def purge(yes: bool) -> None:
    """Drop every dead letter. They cannot be recovered."""

    async def count(channel: AbstractChannel, queue: AbstractQueue) -> int:
        return await ready_count(channel, queue.name)

    if not yes:
        waiting = _run(count)
        if waiting == 0:
            click.echo("The dead-letter queue is empty.")
            return
        click.confirm(f"Drop {waiting} dead-lettered job(s) for good?", abort=True)

    async def work(_: AbstractChannel, queue: AbstractQueue) -> int:
        result = await queue.purge()
        return int(result.message_count or 0)

    click.echo(f"Purged {_run(work)} dead letter(s).")
