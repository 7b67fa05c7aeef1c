"""`rsms accounts set-webhook|remove-webhook`: the secret is shown once, the URL checked,
and an accounts file written before webhooks existed still loads."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from cli.main import rsms
from shared.accounts import load_accounts


def run(path: Path, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(rsms, ["accounts", *args, "--file", str(path)])
    return result.exit_code, result.output


def test_set_webhook_prints_a_new_secret_once_and_show_does_not(accounts_file: Path) -> None:
    assert run(accounts_file, "create-project", "acme", "--name", "Acme AS")[0] == 0
    code, output = run(accounts_file, "set-webhook", "acme", "https://acme.example/rsms")
    assert code == 0, output
    [secret] = [line.split(": ", 1)[1] for line in output.splitlines() if line.startswith("Signing secret: ")]
    assert secret.startswith("whsec_") and len(secret) > 40
    webhook = load_accounts(accounts_file).projects["acme"].webhook
    assert webhook is not None and (webhook.url, webhook.secret) == ("https://acme.example/rsms", secret)
    code, shown = run(accounts_file, "show", "acme")
    assert "Webhook: https://acme.example/rsms" in shown and secret not in shown
    code, shown = run(accounts_file, "show", "acme", "--json")
    assert json.loads(shown)["webhook"] == "https://acme.example/rsms" and secret not in shown


def test_a_given_secret_is_kept_and_not_echoed(accounts_file: Path) -> None:
    run(accounts_file, "create-project", "acme", "--name", "Acme AS")
    code, output = run(accounts_file, "set-webhook", "acme", "http://127.0.0.1:9000/x", "--secret", "s" * 20)
    assert code == 0 and "s" * 20 not in output
    webhook = load_accounts(accounts_file).projects["acme"].webhook
    assert webhook is not None and webhook.secret == "s" * 20


def test_bad_input_is_refused_and_changes_nothing(accounts_file: Path) -> None:
    run(accounts_file, "create-project", "acme", "--name", "Acme AS")
    before = accounts_file.read_bytes()
    for args in (
        ("set-webhook", "acme", "ftp://acme.example/x"),
        ("set-webhook", "acme", "acme.example/x"),
        ("set-webhook", "acme", "https://acme.example/x", "--secret", "short"),
        ("set-webhook", "nobody", "https://acme.example/x"),
        ("remove-webhook", "acme"),
    ):
        code, output = run(accounts_file, *args)
        assert code == 1 and output.startswith("Error: "), (args, output)
    assert accounts_file.read_bytes() == before


def test_remove_webhook_and_older_files_load(accounts_file: Path) -> None:
    accounts_file.write_text('[projects.acme]\nname = "Acme AS"\n')  # as written before webhooks
    assert load_accounts(accounts_file).projects["acme"].webhook is None
    run(accounts_file, "set-webhook", "acme", "https://acme.example/rsms")
    code, output = run(accounts_file, "remove-webhook", "acme")
    assert code == 0 and "removed" in output
    assert load_accounts(accounts_file).projects["acme"].webhook is None
    assert "webhook" not in accounts_file.read_text()
