"""`rsms blocklist …`: the numbers ingest refuses with RECIPIENT_BLOCKED."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

import click
from redis.asyncio import Redis

from cli.table import json_option, print_table
from services.ingest.validation import E164
from shared.blocklist import Blocklist
from shared.settings import ServiceSettings

T = TypeVar("T")


def _run(action: Callable[[Blocklist], Awaitable[T]]) -> T:
    async def main() -> T:
        redis = Redis.from_url(ServiceSettings().redis_url)
        try:
            return await action(Blocklist(redis))
        finally:
            await redis.aclose()

    return asyncio.run(main())


def _numbers(numbers: tuple[str, ...]) -> list[str]:
    bad = [n for n in numbers if not E164.fullmatch(n)]
    if bad:
        raise click.BadParameter(f"not E.164 numbers: {', '.join(bad)}")
    return list(numbers)


@click.group()
def blocklist() -> None:
    """Recipients that are never sent to (the dispatcher adds those the provider blocks)."""


@blocklist.command("list")
@json_option
def list_numbers(as_json: bool) -> None:
    """Every blocked number."""
    members = _run(lambda b: b.members())
    print_table(["number"], [(m,) for m in members], empty="The blocklist is empty.", as_json=as_json)


@blocklist.command("add")
@click.argument("numbers", nargs=-1, required=True)
def add(numbers: tuple[str, ...]) -> None:
    added = _run(lambda b: b.add(_numbers(numbers)))
    click.echo(f"Added {added} number(s).")


@blocklist.command("remove")
@click.argument("numbers", nargs=-1, required=True)
def remove(numbers: tuple[str, ...]) -> None:
    removed = _run(lambda b: b.remove(_numbers(numbers)))
    click.echo(f"Removed {removed} number(s).")
