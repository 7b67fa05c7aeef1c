"""`rsms optouts …`: a project's opt-out list (numbers that replied STOP to it).

Ingest refuses the project's sends to these numbers with RECIPIENT_BLOCKED; the dispatcher
adds a number that texts an opt-out keyword to one of the project's inbound numbers and
removes one that texts START. Other projects may still send to them.
"""

from __future__ import annotations

from pathlib import Path

import click

from cli.accounts import file_option, project_exists
from cli.number_lists import e164_numbers, run_on
from cli.table import json_option, print_table
from shared.optouts import OptOuts


@click.group()
def optouts() -> None:
    """Numbers a project may no longer send to (they replied STOP; START takes them off)."""


@optouts.command("list")
@click.argument("project")
@file_option
@json_option
def list_numbers(project: str, path: Path | None, as_json: bool) -> None:
    """Every number on PROJECT's opt-out list."""
    project_exists(project, path)
    members = run_on(OptOuts, lambda o: o.members(project))
    print_table(["number"], [(m,) for m in members], empty=f"Nobody opted out of {project}.", as_json=as_json)


@optouts.command("add")
@click.argument("project")
@click.argument("numbers", nargs=-1, required=True)
@file_option
def add(project: str, numbers: tuple[str, ...], path: Path | None) -> None:
    """Put NUMBERS on PROJECT's opt-out list."""
    project_exists(project, path)
    added = run_on(OptOuts, lambda o: o.add(project, e164_numbers(numbers)))
    click.echo(f"Added {added} number(s) to the opt-out list of {project}.")


@optouts.command("remove")
@click.argument("project")
@click.argument("numbers", nargs=-1, required=True)
@file_option
def remove(project: str, numbers: tuple[str, ...], path: Path | None) -> None:
    """Take NUMBERS off PROJECT's opt-out list."""
    project_exists(project, path)
    removed = run_on(OptOuts, lambda o: o.remove(project, e164_numbers(numbers)))
    click.echo(f"Removed {removed} number(s) from the opt-out list of {project}.")
