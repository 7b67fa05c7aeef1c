"""What `rsms blocklist` and `rsms optouts` share: numbers checked as E.164, and one Redis
connection around one action on a list kept in Redis."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

import click

from services.ingest.validation import E164
from shared.redis_connection import RedisClient, connect
from shared.settings import ServiceSettings

S = TypeVar("S")
T = TypeVar("T")


def run_on(store: Callable[[RedisClient], S], action: Callable[[S], Awaitable[T]]) -> T:
    """`action` on the list `store` builds over the configured Redis; the connection closed after."""

    async def main() -> T:
        redis = connect(ServiceSettings().redis_url)
        try:
            return await action(store(redis))
        finally:
            await redis.aclose()

    return asyncio.run(main())


def e164_numbers(numbers: tuple[str, ...]) -> list[str]:
    bad = [n for n in numbers if not E164.fullmatch(n)]
    if bad:
        raise click.BadParameter(f"not E.164 numbers: {', '.join(bad)}")
    return list(numbers)
