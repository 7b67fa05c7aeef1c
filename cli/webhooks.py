"""`rsms webhooks`: run the webhook sender, or look at and replay what it gave up on.

rsms webhooks                          run it (RSMS_WEBHOOKS_*; `rsms up` does)
rsms webhooks list [--json]            dead-lettered deliveries: project, events, attempts, last error
rsms webhooks replay [--project P]     send them again once the receiver is fixed

Dead letters are deliveries still not taken after the last attempt
(RSMS_WEBHOOKS_MAX_ATTEMPTS). `list` looks without taking anything; `replay` puts them
back on the sender's retries queue with their attempts reset.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import aio_pika
import click
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage, AbstractQueue
from aio_pika.exceptions import ChannelNotFoundEntity
from pydantic import ValidationError

from cli.table import json_option, print_table
from shared.contracts import WebhookDeadLetter
from shared.rabbitmq import connect_to_any
from shared.settings import ServiceSettings
from shared.topology import WEBHOOK_DEAD_LETTER_QUEUE, WEBHOOK_RETRIES_QUEUE

T = TypeVar("T")


def _run(work: Callable[[AbstractChannel, AbstractQueue], Awaitable[T]]) -> T:
    async def main() -> T:
        connection = await connect_to_any(ServiceSettings().amqp_url)
        try:
            channel = await connection.channel(publisher_confirms=True)
            try:
                queue = await channel.get_queue(WEBHOOK_DEAD_LETTER_QUEUE.name, ensure=True)
            except ChannelNotFoundEntity:
                raise click.ClickException("no webhook queues on this broker: the webhook sender never ran") from None
            return await work(channel, queue)
        finally:
            # Whatever was taken and not acknowledged goes back to the queue.
            await connection.close()

    return asyncio.run(main())


async def _take(
    queue: AbstractQueue, limit: int | None
) -> list[tuple[AbstractIncomingMessage, WebhookDeadLetter | None]]:
    taken: list[tuple[AbstractIncomingMessage, WebhookDeadLetter | None]] = []
    while limit is None or len(taken) < limit:
        message = await queue.get(no_ack=False, fail=False)
        if message is None:
            break
        try:
            letter: WebhookDeadLetter | None = WebhookDeadLetter.model_validate_json(message.body)
        except ValidationError:
            letter = None
        taken.append((message, letter))
    return taken


def _row(index: int, letter: WebhookDeadLetter | None) -> list[Any]:
    if letter is None:
        return [index, None, None, "unreadable", None, None, "not a dead letter this version knows"]
    delivery = letter.delivery
    detail = letter.detail if len(letter.detail) <= 80 else letter.detail[:77] + "..."
    return [
        index,
        letter.dead_lettered_at,
        letter.project,
        letter.reason,
        len(delivery.events) if delivery else None,
        delivery.attempts if delivery else None,
        detail,
    ]


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

    async def work(_: AbstractChannel, queue: AbstractQueue) -> list[list[Any]]:
        taken = await _take(queue, limit)
        return [
            _row(i, letter)
            for i, (_, letter) in enumerate(taken, 1)
            if project is None or (letter is not None and letter.project == project)
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
        for message, letter in await _take(queue, limit):
            if letter is None or letter.delivery is None:
                skipped += 1
                continue
            if project is not None and letter.project != project:
                continue
            delivery = letter.delivery.model_copy(
                update={"attempts": 0, "last_error": None, "replay": letter.delivery.replay + 1}
            )
            await channel.default_exchange.publish(
                aio_pika.Message(
                    delivery.model_dump_json().encode(),
                    content_type="application/json",
                    delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                ),
                routing_key=WEBHOOK_RETRIES_QUEUE.name,
                mandatory=True,
            )
            await message.ack()  # only once the broker confirmed the republished delivery
            replayed += 1
            events += len(delivery.events)
        return replayed, events, skipped

    replayed_deliveries, replayed_events, skipped = _run(work)
    click.echo(f"Replayed {replayed_deliveries} delivery(ies), {replayed_events} event(s).")
    if skipped:
        click.echo(f"Left {skipped} unreadable dead letter(s) on the queue (see `rsms webhooks list`).")
