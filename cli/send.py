"""`rsms send`: send an SMS through a running gateway's API, with the Python SDK.

It is a client like any other (the API key, the rate limits, the Idempotency-Key), so what
works here works in an application: any number of recipients, split into requests of 1000
and sent within the key's rate limit, with retries.
"""

from __future__ import annotations

from typing import TextIO

import click

from cli.table import json_option, print_table
from rsms_client import ApiError, RsmsClient, RsmsError, SendManyError, SendProgress, SendResult
from services.ingest.settings import IngestSettings


def default_url() -> str:
    """The gateway on this machine, where `rsms up` and `rsms ingest` serve it."""
    settings = IngestSettings()
    host = "127.0.0.1" if settings.ingest_host in ("0.0.0.0", "::", "") else settings.ingest_host  # noqa: S104
    return f"http://{host}:{settings.ingest_port}"


def read_recipients(numbers: tuple[str, ...], file: TextIO | None) -> list[str]:
    recipients = list(numbers)
    if file is not None:
        recipients += [line.strip() for line in file if line.strip() and not line.lstrip().startswith("#")]
    return recipients


def _rows(results: list[SendResult]) -> list[list[object]]:
    return [
        [i, r.message_id, r.recipient_count, r.sms_segments_per_recipient, r.total_sms_segments, r.estimated_cost]
        for i, r in enumerate(results, 1)
    ]


def _describe(error: RsmsError) -> str:
    if isinstance(error, ApiError):
        return f"{error.code}: {error.message}" + (f" ({'; '.join(error.details)})" if error.details else "")
    return str(error)


@click.command("send")
@click.option("--tag", required=True, help="A tag of the key's project; it selects the sender name.")
@click.option(
    "--to", "numbers", multiple=True, metavar="NUMBER", help="A recipient in E.164 (+4712345678); repeatable."
)
@click.option("--to-file", type=click.File("r"), default=None, help="Recipients, one per line ('-': standard input).")
@click.option("--message", "-m", required=True, help="The text, 1-1000 characters.")
@click.option(
    "--key", envvar="SMS_API_KEY", required=True, show_envvar=True, help="The project's API key (sk_live_/sk_test_)."
)
@click.option("--url", default=None, help="The gateway's base URL [default: http://127.0.0.1:$RSMS_INGEST_PORT].")
@click.option(
    "--idempotency-key",
    default=None,
    help="Make the send safe to repeat: the same key and text queue nothing twice (within 24 hours).",
)
@json_option
def send(
    tag: str,
    numbers: tuple[str, ...],
    to_file: TextIO | None,
    message: str,
    key: str,
    url: str | None,
    idempotency_key: str | None,
    as_json: bool,
) -> None:
    """Send MESSAGE to the recipients with the sender of TAG, through the gateway's API.

    Any number of recipients: duplicates are dropped, and they go in requests of 1000 within
    the key's rate limit (retried after a 429 or a server error with the same
    Idempotency-Key). Prints one row per request with its message id.
    """
    recipients = read_recipients(numbers, to_file)
    if not recipients:
        raise click.UsageError("no recipients: give --to NUMBER (repeatable) or --to-file FILE")

    def progress(step: SendProgress) -> None:
        if step.batches_total > 1:
            click.echo(
                f"{step.batches_sent}/{step.batches_total} requests, "
                f"{step.recipients_sent:,}/{step.recipients_total:,} recipients queued",
                err=True,
            )

    headers = ["#", "message id", "recipients", "segments each", "segments", "estimated cost"]
    with RsmsClient(url or default_url(), key) as client:
        try:
            result = client.send_many(tag, recipients, message, idempotency_key=idempotency_key, progress=progress)
        except SendManyError as stopped:
            if stopped.sent:
                print_table(headers, _rows(stopped.sent), as_json=as_json)
            raise click.ClickException(
                f"{_describe(stopped.error)}; {len(stopped.remaining):,} recipient(s) not sent"
            ) from None
    print_table(headers, _rows(result.results), as_json=as_json)
