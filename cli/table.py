"""Output of operator commands: aligned tables a person reads, or JSON a script reads.

Every command that lists something takes `--json` (`json_option`) and prints through
`print_table` (one listing) or `print_document` (a record with listings inside), so the
two forms always carry the same data. In JSON, a table is a list of objects keyed by the
column names in snake_case (`"live key"` → `live_key`), values unformatted: numbers stay
numbers, money and ids strings, times ISO 8601, nothing shown as `-`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import date, datetime
from decimal import Decimal
from typing import Any, TypeVar
from uuid import UUID

import click

F = TypeVar("F", bound=Callable[..., Any])


def json_option(command: F) -> F:
    """`--json`: the command's output as JSON instead of a table (passed as `as_json`)."""
    return click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")(command)


def render_table(headers: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    cells = [[_cell(value) for value in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in cells:
        widths = [max(w, len(c)) for w, c in zip(widths, row, strict=True)]
    numeric = [all(_is_number(row[i]) for row in cells) and bool(cells) for i in range(len(headers))]

    def line(values: Sequence[str]) -> str:
        return "  ".join(
            v.rjust(w) if num else v.ljust(w) for v, w, num in zip(values, widths, numeric, strict=True)
        ).rstrip()

    out = [line(list(headers)), "  ".join("-" * w for w in widths)]
    out.extend(line(row) for row in cells)
    return "\n".join(out)


def table_records(headers: Sequence[str], rows: Iterable[Sequence[object]]) -> list[dict[str, Any]]:
    """The rows as JSON-ready objects keyed by the snake_case column names."""
    keys = [json_key(h) for h in headers]
    return [{key: json_value(value) for key, value in zip(keys, row, strict=True)} for row in rows]


def print_table(
    headers: Sequence[str],
    rows: Iterable[Sequence[object]],
    empty: str = "(none)",
    *,
    as_json: bool = False,
) -> None:
    rows = list(rows)
    if as_json:
        click.echo(json.dumps(table_records(headers, rows), indent=2, ensure_ascii=False))
        return
    if not rows:
        click.echo(empty)
        return
    click.echo(render_table(headers, rows))


def print_document(document: Mapping[str, Any]) -> None:
    """A record (and the listings in it, as `table_records`) for `--json`."""
    click.echo(json.dumps(json_value(document), indent=2, ensure_ascii=False))


def json_key(header: str) -> str:
    if header == "#":
        return "index"
    return re.sub(r"[^a-z0-9]+", "_", header.lower()).strip("_")


def json_value(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): json_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [json_value(v) for v in value]
    if isinstance(value, Decimal | UUID):
        return str(value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)


def _cell(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float | Decimal):
        return f"{value:,.2f}"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, list | tuple):
        return ", ".join(_cell(v) for v in value) or "-"
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    return str(value)


def _is_number(text: str) -> bool:
    return text.replace(",", "").replace(".", "", 1).lstrip("-").isdigit() or text == "-"
