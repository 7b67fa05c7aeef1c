"""`rsms receipts unmatched`: delivery receipts no sent part could be matched to.

The dispatcher keeps them on `rsms.receipts.unmatched` (never dropped): a carrier id the
gateway never sent, or a receipt later than the dispatcher keeps its parts for
(`RSMS_RECEIPTS_TTL_SECONDS`). Listing takes nothing off the queue.
"""

from __future__ import annotations

import asyncio
import json

import click
from pydantic import ValidationError

from cli.queue_moves import move_to, take
from cli.table import print_table
from shared.contracts import UnmatchedReceipt
from shared.ledger_queries import format_timestamp
from shared.rabbitmq import connect_to_any
from shared.settings import ServiceSettings
from shared.topology import RECEIPTS_UNMATCHED_QUEUE


async def peek_unmatched(amqp_url: str, limit: int | None) -> list[UnmatchedReceipt | bytes]:
    """The kept receipts, oldest first (unreadable bodies as they are); all stay queued.

    Each is put back as a confirmed copy, never requeued: the queue is a quorum queue, and
    every requeue would count against its delivery limit (cli/queue_moves.py)."""
    connection = await connect_to_any(amqp_url)
    try:
        channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
        queue = await channel.declare_queue(
            RECEIPTS_UNMATCHED_QUEUE.name, durable=True, arguments=RECEIPTS_UNMATCHED_QUEUE.arguments
        )
        found: list[UnmatchedReceipt | bytes] = []
        for message in await take(channel, queue):
            await move_to(channel, message, queue.name)  # back to the tail, in order
            try:
                found.append(UnmatchedReceipt.model_validate_json(message.body))
            except ValidationError:
                found.append(message.body)
        return found[:limit]
    finally:
        await connection.close()  # what was taken and not moved goes back


@click.group("receipts")
def receipts() -> None:
    """Delivery receipts the gateway could not match (RSMS_AMQP_URL)."""


@receipts.command("unmatched")
@click.option("--limit", type=int, default=None, help="Show at most this many.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object a line instead of a table.")
def unmatched(limit: int | None, as_json: bool) -> None:
    """List unmatched receipts, oldest first; nothing is taken off the queue."""
    found = asyncio.run(peek_unmatched(ServiceSettings().amqp_url, limit))
    if as_json:
        for item in found:
            if isinstance(item, bytes):
                click.echo(json.dumps({"unreadable": item.decode(errors="replace")}))
            else:
                click.echo(item.model_dump_json())
        return
    print_table(
        ["received (UTC)", "carrier id", "status", "error", "reason"],
        [
            [format_timestamp(item.received_at), item.provider_reference, item.status, item.error_code, item.reason]
            if isinstance(item, UnmatchedReceipt)
            else ["-", "-", "unreadable", "-", "not a receipt this version knows"]
            for item in found
        ],
        empty="No unmatched receipts.",
    )
