"""`rsms settings`: every RSMS_* setting of every service, with its default and meaning."""

from __future__ import annotations

import json

import click

from cli.table import json_option, print_table
from shared.settings import settings_classes


def settings_rows() -> list[tuple[str, str, str, str]]:
    """(variable, services, default, description), one row per variable."""
    rows: dict[str, tuple[list[str], str, str]] = {}
    for service, cls in settings_classes().items():
        prefix = str(cls.model_config.get("env_prefix", ""))
        for field_name, field in cls.model_fields.items():
            variable = (prefix + field_name).upper()
            if variable in rows:
                rows[variable][0].append(service)
                continue
            default = field.get_default(call_default_factory=True)
            # Collections as the JSON the variable takes, so a default pasted from here parses;
            # no default as a placeholder, not "None", which no setting takes.
            if default is None:
                shown = "<unset>"
            elif isinstance(default, dict | list | tuple):
                shown = json.dumps(default, default=str)
            else:
                shown = str(default)
            rows[variable] = ([service], shown, field.description or "")
    return [(variable, ", ".join(services), default, doc) for variable, (services, default, doc) in rows.items()]


@click.command("settings")
@click.option("--markdown", is_flag=True, help="A Markdown table (for the README).")
@json_option
def settings(markdown: bool, as_json: bool) -> None:
    """Every RSMS_* environment variable, the services that read it, its default."""
    rows = settings_rows()
    if markdown:
        click.echo("| variable | read by | default | meaning |\n|---|---|---|---|")
        for variable, services, default, doc in rows:
            click.echo(f"| `{variable}` | {services} | `{default}` | {doc} |")
        return
    print_table(["variable", "read by", "default", "meaning"], rows, as_json=as_json)
