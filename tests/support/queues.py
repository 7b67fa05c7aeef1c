"""Reading what reached a RabbitMQ queue, straight off the broker."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aio_pika


async def drain(amqp_url: str, queue: str, *, expect: int | None = None, wait: float = 5.0) -> list[dict[str, Any]]:
    """Take messages off `queue` (acking them): `expect` of them, or all there are now."""
    connection = await aio_pika.connect(amqp_url)
    try:
        channel = await connection.channel()
        q = await channel.get_queue(queue, ensure=True)
        found: list[dict[str, Any]] = []
        deadline = asyncio.get_running_loop().time() + wait
        while expect is None or len(found) < expect:
            message = await q.get(no_ack=False, fail=False)
            if message is None:
                if expect is None or asyncio.get_running_loop().time() > deadline:
                    break
                await asyncio.sleep(0.05)
                continue
            found.append(
                {
                    "body": json.loads(message.body),
                    "properties": {
                        "delivery_mode": message.delivery_mode,
                        "message_id": message.message_id,
                        "content_type": message.content_type,
                        "type": message.type,
                    },
                }
            )
            await message.ack()
        return found
    finally:
        await connection.close()


async def depth(amqp_url: str, queue: str) -> int:
    connection = await aio_pika.connect(amqp_url)
    try:
        channel = await connection.channel()
        declared = await channel.declare_queue(queue, passive=True)
        return int(declared.declaration_result.message_count or 0)
    finally:
        await connection.close()
