"""`rsms dlq list|replay|purge`: the dispatcher's dead-letter queue, for operators.

Dead letters are jobs the dispatcher gave up on: recipients still failing after the last
attempt, or a body that was not a valid job. `list` looks without taking anything;
`replay` sends replayable jobs back to the dispatch queue with their attempts reset;
`purge` drops them all.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import aio_pika
import click
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage, AbstractQueue
from pydantic import ValidationError

from cli.table import json_option, print_table
from shared.contracts import DeadLetter
from shared.settings import ServiceSettings
from shared.topology import DEAD_LETTER_QUEUE, DISPATCH_QUEUE

T = TypeVar("T")


def _run(work: Callable[[AbstractChannel, AbstractQueue], Awaitable[T]]) -> T:
    async def main() -> T:
        connection = await aio_pika.connect(ServiceSettings().amqp_url)
        try:
            channel = await connection.channel(publisher_confirms=True)
            queue = await channel.get_queue(DEAD_LETTER_QUEUE.name, ensure=True)
            return await work(channel, queue)
        finally:
            # Whatever was taken and not acknowledged goes back to the queue.
            await connection.close()

    return asyncio.run(main())


async def _take(queue: AbstractQueue, limit: int | None) -> list[tuple[AbstractIncomingMessage, DeadLetter | None]]:
    taken: list[tuple[AbstractIncomingMessage, DeadLetter | None]] = []
    while limit is None or len(taken) < limit:
        message = await queue.get(no_ack=False, fail=False)
        if message is None:
            break
        try:
            letter: DeadLetter | None = DeadLetter.model_validate_json(message.body)
        except ValidationError:
            letter = None
        taken.append((message, letter))
    return taken


def _row(index: int, letter: DeadLetter | None) -> list[Any]:
    if letter is None:
        return [index, None, "unreadable", None, None, None, "not a dead letter this version knows"]
    recipients = len(letter.job.recipients) if letter.job else None
    detail = letter.detail if len(letter.detail) <= 80 else letter.detail[:77] + "..."
    return [
        index,
        letter.dead_lettered_at,
        letter.reason,
        letter.message_id,
        letter.attempts,
        recipients,
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

    async def work(_: AbstractChannel, queue: AbstractQueue) -> list[list[Any]]:
        return [_row(i, letter) for i, (_, letter) in enumerate(await _take(queue, limit), 1)]

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
    """Send dead-lettered jobs back to the dispatcher, attempts reset.

    Only the recipients still unsent are in a dead letter, so nobody gets a message twice.
    Invalid jobs cannot be replayed and stay on the queue.
    """
    wanted = set(message_ids)

    async def work(channel: AbstractChannel, queue: AbstractQueue) -> tuple[int, int, int]:
        replayed = recipients = skipped = 0
        for message, letter in await _take(queue, limit):
            if letter is None or letter.job is None:
                skipped += 1
                continue
            if wanted and str(letter.message_id) not in wanted:
                continue
            job = letter.job.model_copy(update={"attempt": 1, "replay": letter.job.replay + 1})
            await channel.default_exchange.publish(
                aio_pika.Message(
                    job.model_dump_json().encode(),
                    content_type="application/json",
                    delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                ),
                routing_key=DISPATCH_QUEUE.name,
                mandatory=True,
            )
            await message.ack()  # only once the broker confirmed the republished job
            replayed += 1
            recipients += len(job.recipients)
        return replayed, recipients, skipped

    replayed_jobs, replayed_recipients, skipped = _run(work)
    click.echo(f"Replayed {replayed_jobs} job(s), {replayed_recipients} recipient(s).")
    if skipped:
        click.echo(f"Left {skipped} invalid job(s) on the queue: not replayable (see `rsms dlq list`).")


@dlq.command("purge")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def purge(yes: bool) -> None:
    """Drop every dead letter. They cannot be recovered."""

    async def count(_: AbstractChannel, queue: AbstractQueue) -> int:
        declared = await queue.channel.declare_queue(queue.name, passive=True)
        return int(declared.declaration_result.message_count or 0)

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
