"""`rsms accounts …`: edit the accounts file the ingest service reads (it reloads by itself)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal
from pathlib import Path

import click

from cli.table import json_option, print_document, print_table, table_records
from services.ingest.settings import IngestSettings
from shared import accounts as store

file_option = click.option(
    "--file",
    "path",
    type=click.Path(path_type=Path),
    default=None,
    help="Accounts file (default: RSMS_ACCOUNTS_FILE or var/accounts.toml).",
)


def _path(path: Path | None) -> Path:
    return path or IngestSettings().accounts_file


def project_exists(project: str, path: Path | None) -> None:
    """Fails the command unless the accounts file has PROJECT."""
    try:
        store.load_accounts(_path(path)).project(project)
    except store.AccountsError as exc:
        raise click.ClickException(str(exc)) from None


@contextmanager
def _editing(path: Path | None) -> Iterator[store.AccountsFile]:
    try:
        with store.editing(_path(path)) as accounts:
            yield accounts
    except store.AccountsError as exc:
        raise click.ClickException(str(exc)) from None


@click.group()
def accounts() -> None:
    """Projects, API keys, tags, IP and destination allow-lists, limits, caps and inbound numbers."""


@accounts.command("list")
@file_option
@json_option
def list_projects(path: Path | None, as_json: bool) -> None:
    """Every project with its keys and tags."""
    data = store.load_accounts(_path(path))
    print_table(
        [
            "project",
            "name",
            "live key",
            "test keys",
            "tags",
            "active tags",
            "allow-list",
            "inbound numbers",
            "countries",
            "number types",
            "store bodies",
            "suspended",
        ],
        [
            (
                pid,
                p.name,
                next((k.id for k in p.keys if k.kind == "live"), None),
                sum(k.kind == "test" for k in p.keys),
                len(p.tags),
                sum(t.active for t in p.tags.values()),
                [str(n) for n in p.ip_allowlist] or ([] if as_json else "any"),
                list(p.inbound_numbers),
                list(p.allowed_countries) or ([] if as_json else "any"),
                list(p.allowed_number_types) or ([] if as_json else "default"),
                p.store_bodies,
                p.suspended,
            )
            for pid, p in sorted(data.projects.items())
        ],
        empty="No projects yet: rsms accounts create-project ID --name NAME",
        as_json=as_json,
    )


@accounts.command("show")
@click.argument("project")
@file_option
@json_option
def show(project: str, path: Path | None, as_json: bool) -> None:
    """One project's keys, tags and limits."""
    try:
        p = store.load_accounts(_path(path)).project(project)
    except store.AccountsError as exc:
        raise click.ClickException(str(exc)) from None
    limits = p.limits.model_dump(exclude_none=True)
    key_headers = ["key id", "kind", "created"]
    keys = [(k.id, k.kind, k.created_at) for k in p.keys]
    tag_headers = ["tag", "sender", "active"]
    tags = [(t, r.sender, r.active) for t, r in sorted(p.tags.items())]
    if as_json:
        print_document(
            {
                "project": project,
                "name": p.name,
                "ip_allowlist": [str(n) for n in p.ip_allowlist],
                "allowed_countries": p.allowed_countries,
                "allowed_number_types": p.allowed_number_types,
                "limits": limits,
                "store_bodies": p.store_bodies,
                "suspended": p.suspended,
                "inbound_numbers": list(p.inbound_numbers),
                "webhook": p.webhook.url if p.webhook else None,
                "keys": table_records(key_headers, keys),
                "tags": table_records(tag_headers, tags),
            }
        )
        return
    click.echo(f"Project {project}: {p.name}")
    click.echo(f"IP allow-list: {', '.join(str(n) for n in p.ip_allowlist) or 'any address'}")
    click.echo(f"Destination countries: {', '.join(p.allowed_countries) or 'any country'}")
    click.echo(
        "Number types also allowed: "
        + (", ".join(p.allowed_number_types) or "none (premium-rate, shared-cost and international networks refused)")
    )
    click.echo("Limits: " + (", ".join(f"{k}={v}" for k, v in limits.items()) or "service defaults"))
    click.echo(f"Inbound numbers: {', '.join(p.inbound_numbers) or 'none'}")
    click.echo(f"Webhook: {p.webhook.url if p.webhook else 'none'}")
    click.echo()
    print_table(key_headers, [(i, kind, created.isoformat()) for i, kind, created in keys])
    click.echo()
    print_table(tag_headers, tags)


@accounts.command("create-project")
@click.argument("project")
@click.option("--name", required=True, help="Display name.")
@click.option("--no-store-bodies", is_flag=True, help="Keep message texts out of the ledger.")
@file_option
def create_project(project: str, name: str, no_store_bodies: bool, path: Path | None) -> None:
    """Create a project (then issue it a key and add tags)."""
    with _editing(path) as data:
        store.create_project(data, project, name, store_bodies=not no_store_bodies)
    click.echo(f"Created project {project}.")


@accounts.command("issue-key")
@click.argument("project")
@click.option("--test", "test_key", is_flag=True, help="An sk_test_ key: validated and queued, never sent or billed.")
@file_option
def issue_key(project: str, test_key: bool, path: Path | None) -> None:
    """Issue a key. A new live key replaces the project's old one. Printed once only."""
    with _editing(path) as data:
        record, key = store.issue_key(data, project, "test" if test_key else "live")
    click.echo(f"Key id:  {record.id} ({record.kind})")
    click.echo(f"API key: {key}")
    click.echo("Store it now: only its hash is kept, it cannot be shown again.")


@accounts.command("rotate-key")
@click.argument("project")
@file_option
@click.pass_context
def rotate_key(ctx: click.Context, project: str, path: Path | None) -> None:
    """Replace the project's live key; the old one stops working within a second."""
    ctx.invoke(issue_key, project=project, test_key=False, path=path)


@accounts.command("revoke-key")
@click.argument("project")
@click.argument("key_id")
@file_option
def revoke_key(project: str, key_id: str, path: Path | None) -> None:
    """Remove a key by its id."""
    with _editing(path) as data:
        store.revoke_key(data, project, key_id)
    click.echo(f"Revoked {key_id}.")


@accounts.command("add-tag")
@click.argument("project")
@click.argument("tag")
@click.argument("sender")
@file_option
def add_tag(project: str, tag: str, sender: str, path: Path | None) -> None:
    """Map TAG to SENDER (up to 11 letters/digits, or a phone number); replaces an existing tag."""
    with _editing(path) as data:
        store.set_tag(data, project, tag, sender)
    click.echo(f"Tag {tag} → sender {sender}.")


@accounts.command("deactivate-tag")
@click.argument("project")
@click.argument("tag")
@file_option
def deactivate_tag(project: str, tag: str, path: Path | None) -> None:
    """Stop accepting sends with TAG (answered with INVALID_TAG)."""
    with _editing(path) as data:
        store.set_tag_active(data, project, tag, active=False)
    click.echo(f"Tag {tag} deactivated.")


@accounts.command("activate-tag")
@click.argument("project")
@click.argument("tag")
@file_option
def activate_tag(project: str, tag: str, path: Path | None) -> None:
    """Accept sends with TAG again."""
    with _editing(path) as data:
        store.set_tag_active(data, project, tag, active=True)
    click.echo(f"Tag {tag} activated.")


@accounts.command("suspend")
@click.argument("project")
@file_option
def suspend(project: str, path: Path | None) -> None:
    """Refuse every request of PROJECT with FORBIDDEN (keys stay valid)."""
    with _editing(path) as data:
        store.set_suspended(data, project, suspended=True)
    click.echo(f"Project {project} suspended.")


@accounts.command("resume")
@click.argument("project")
@file_option
def resume(project: str, path: Path | None) -> None:
    """Accept PROJECT's requests again."""
    with _editing(path) as data:
        store.set_suspended(data, project, suspended=False)
    click.echo(f"Project {project} resumed.")


@accounts.command("set-allowlist")
@click.argument("project")
@click.argument("cidrs", nargs=-1)
@file_option
def set_allowlist(project: str, cidrs: tuple[str, ...], path: Path | None) -> None:
    """Allow only these networks (CIDRs); none given: any address."""
    with _editing(path) as data:
        store.set_allowlist(data, project, list(cidrs))
    click.echo(f"Allow-list of {project}: {', '.join(cidrs) or 'any address'}.")


@accounts.command("set-countries")
@click.argument("project")
@click.argument("countries", nargs=-1)
@file_option
def set_countries(project: str, countries: tuple[str, ...], path: Path | None) -> None:
    """Send only to numbers of these countries (ISO 3166 alpha-2: NO SE DK); none given: any."""
    with _editing(path) as data:
        store.set_countries(data, project, list(countries))
        allowed = data.project(project).allowed_countries
    click.echo(f"Destination countries of {project}: {', '.join(allowed) or 'any country'}.")


@accounts.command("set-number-types")
@click.argument("project")
@click.argument("types", nargs=-1, type=click.Choice(store.NUMBER_TYPES))
@file_option
def set_number_types(project: str, types: tuple[store.NumberType, ...], path: Path | None) -> None:
    """Also allow sends to these number types, refused by default; none given: refuse all three."""
    with _editing(path) as data:
        store.set_number_types(data, project, list(types))
    click.echo(f"Number types {project} may also send to: {', '.join(sorted(types)) or 'none'}.")


@accounts.command("set-limits")
@click.argument("project")
@click.option("--per-minute", type=click.IntRange(min=1), help="Requests per minute per key.")
@click.option("--tag-per-minute", type=click.IntRange(min=1), help="Requests per minute per tag.")
@click.option("--concurrent", type=click.IntRange(min=1), help="Concurrent requests per key.")
@click.option(
    "--segments-per-message",
    type=click.IntRange(min=1),
    help="Cap: most SMS segments per message (longer messages: VALIDATION_ERROR).",
)
@click.option(
    "--daily-spend-cap",
    type=click.FloatRange(min=0, min_open=True),
    help="Cap: most estimated cost of live sends per UTC day, in the gateway's currency (over it: FORBIDDEN).",
)
@file_option
def set_limits(
    project: str,
    per_minute: int | None,
    tag_per_minute: int | None,
    concurrent: int | None,
    segments_per_message: int | None,
    daily_spend_cap: float | None,
    path: Path | None,
) -> None:
    """Override the service's default limits for one project and set its caps (every one
    omitted: the default, no cap)."""
    limits = store.ProjectLimits(
        requests_per_minute=per_minute,
        tag_requests_per_minute=tag_per_minute,
        concurrent_requests=concurrent,
        segments_per_message=segments_per_message,
        daily_spend_cap=Decimal(str(daily_spend_cap)) if daily_spend_cap is not None else None,
    )
    with _editing(path) as data:
        store.set_limits(data, project, limits)
    click.echo(f"Limits of {project} set.")


@accounts.command("add-inbound-number")
@click.argument("project")
@click.argument("number")
@file_option
def add_inbound_number(project: str, number: str, path: Path | None) -> None:
    """Route inbound SMS to NUMBER (E.164, short code or alphanumeric) to PROJECT."""
    with _editing(path) as data:
        store.add_inbound_number(data, project, number)
    click.echo(f"Inbound SMS to {number} go to {project}.")


@accounts.command("remove-inbound-number")
@click.argument("project")
@click.argument("number")
@file_option
def remove_inbound_number(project: str, number: str, path: Path | None) -> None:
    """Stop routing inbound SMS to NUMBER to PROJECT."""
    with _editing(path) as data:
        store.remove_inbound_number(data, project, number)
    click.echo(f"Inbound SMS to {number} no longer go to {project}.")


@accounts.command("set-webhook")
@click.argument("project")
@click.argument("url")
@click.option("--secret", default=None, help="Sign with this secret (at least 16 characters) instead of a new one.")
@file_option
def set_webhook(project: str, url: str, secret: str | None, path: Path | None) -> None:
    """Send PROJECT's message events to URL, signed (README "Webhooks"); a new secret is printed once."""
    with _editing(path) as data:
        chosen = store.set_webhook(data, project, url, secret)
    click.echo(f"Webhook of {project} → {url}")
    if secret is None:
        click.echo(f"Signing secret: {chosen}")
        click.echo("Store it in your receiver now: `rsms accounts` does not show it again.")


@accounts.command("remove-webhook")
@click.argument("project")
@file_option
def remove_webhook(project: str, path: Path | None) -> None:
    """Stop sending PROJECT's events (deliveries still waiting for a retry are dropped)."""
    with _editing(path) as data:
        store.remove_webhook(data, project)
    click.echo(f"Webhook of {project} removed.")
