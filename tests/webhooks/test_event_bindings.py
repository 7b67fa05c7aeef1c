"""The decision the webhook sender asserts at every reload tick: its event queues are bound
to the exchanges iff its directory names a webhook (services/webhooks/bindings.py). The
broker side is in test_end_to_end.py."""

from __future__ import annotations

from pathlib import Path

from services.webhooks.bindings import events_wanted
from services.webhooks.endpoints import EndpointDirectory, webhook_endpoints
from shared import accounts as store
from shared.accounts import load_accounts
from tests.webhooks.support import write_accounts

HOOK = ("https://acme.example/rsms-events", "whsec_" + "s" * 32)


def test_no_accounts_file_no_project_or_no_webhook_wants_no_copies(accounts_file: Path) -> None:
    assert events_wanted({}) is False
    assert events_wanted(webhook_endpoints(load_accounts(accounts_file))) is False  # no file yet
    write_accounts(accounts_file, {"acme": None, "quiet": None})
    assert events_wanted(webhook_endpoints(load_accounts(accounts_file))) is False


def test_one_webhook_among_projects_without_wants_copies(accounts_file: Path) -> None:
    write_accounts(accounts_file, {"acme": HOOK, "quiet": None})
    assert events_wanted(webhook_endpoints(load_accounts(accounts_file))) is True


def test_the_directory_wants_what_it_last_loaded(accounts_file: Path) -> None:
    write_accounts(accounts_file, {"acme": None})
    directory = EndpointDirectory(accounts_file)
    assert events_wanted(directory.endpoints) is False

    with store.editing(accounts_file) as data:
        store.set_webhook(data, "acme", *HOOK)
    directory.reload()
    assert events_wanted(directory.endpoints) is True

    # A file that does not parse: the last good endpoints stay in force, copies still wanted.
    good = accounts_file.read_text()
    accounts_file.write_text("projects = [not toml")
    directory.reload()
    assert events_wanted(directory.endpoints) is True

    accounts_file.write_text(good)
    with store.editing(accounts_file) as data:
        store.remove_webhook(data, "acme")
    directory.reload()
    assert events_wanted(directory.endpoints) is False
