"""`rsms blocklist …`: the numbers ingest refuses with RECIPIENT_BLOCKED."""

from __future__ import annotations

import click

from cli.number_lists import e164_numbers, run_on
from cli.table import json_option, print_table
from shared.blocklist import Blocklist


@click.group()
def blocklist() -> None:
    """Recipients that are never sent to (the dispatcher adds those the provider blocks)."""


@blocklist.command("list")
@json_option
def list_numbers(as_json: bool) -> None:
    """Every blocked number."""
    members = run_on(Blocklist, lambda b: b.members())
    print_table(["number"], [(m,) for m in members], empty="The blocklist is empty.", as_json=as_json)


@blocklist.command("add")
@click.argument("numbers", nargs=-1, required=True)
def add(numbers: tuple[str, ...]) -> None:
    added = run_on(Blocklist, lambda b: b.add(e164_numbers(numbers)))
    click.echo(f"Added {added} number(s).")


@blocklist.command("remove")
@click.argument("numbers", nargs=-1, required=True)
def remove(numbers: tuple[str, ...]) -> None:
    removed = run_on(Blocklist, lambda b: b.remove(e164_numbers(numbers)))
    click.echo(f"Removed {removed} number(s).")
