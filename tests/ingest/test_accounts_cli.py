"""`rsms accounts` edits the real accounts file that ingest reads."""

from __future__ import annotations

import re
from decimal import Decimal
from pathlib import Path

from click.testing import CliRunner

from cli.main import rsms
from services.ingest.account_store import AccountStore
from shared.accounts import load_accounts


def run(*args: str) -> str:
    result = CliRunner().invoke(rsms, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def test_project_key_tag_and_allowlist_lifecycle(tmp_path: Path) -> None:
    path = tmp_path / "accounts.toml"
    f = ["--file", str(path)]
    run("accounts", "create-project", "acme", "--name", "Acme AS", *f)
    out = run("accounts", "issue-key", "acme", *f)
    key = re.search(r"API key: (sk_live_[A-Za-z0-9]{40})", out)
    assert key, out
    assert key.group(1) not in path.read_text()  # only the hash is stored

    store = AccountStore(path)
    caller = store.authenticate(key.group(1))
    assert caller is not None and caller.project_id == "acme" and not caller.test

    out = run("accounts", "rotate-key", "acme", *f)
    new_key = re.search(r"API key: (sk_live_\w+)", out)
    assert new_key
    store.reload()
    assert store.authenticate(key.group(1)) is None
    assert store.authenticate(new_key.group(1)) is not None

    test_out = run("accounts", "issue-key", "acme", "--test", *f)
    test_key = re.search(r"API key: (sk_test_\w+)", test_out)
    assert test_key
    store.reload()
    test_caller = store.authenticate(test_key.group(1))
    assert test_caller is not None and test_caller.test

    run("accounts", "add-tag", "acme", "R-COV1RSMS", "RSMS", *f)
    run("accounts", "deactivate-tag", "acme", "R-COV1RSMS", *f)
    run("accounts", "set-allowlist", "acme", "203.0.113.0/24", "2001:db8::/32", *f)
    run("accounts", "set-limits", "acme", "--per-minute", "300", *f)
    run("accounts", "suspend", "acme", *f)
    assert load_accounts(path).projects["acme"].suspended is True
    run("accounts", "resume", "acme", *f)
    project = load_accounts(path).projects["acme"]
    assert project.tags["R-COV1RSMS"].active is False
    assert [str(n) for n in project.ip_allowlist] == ["203.0.113.0/24", "2001:db8::/32"]
    assert project.limits.requests_per_minute == 300
    assert project.suspended is False
    assert len([k for k in project.keys if k.kind == "live"]) == 1

    listing = run("accounts", "list", *f)
    assert "acme" in listing and "Acme AS" in listing
    shown = run("accounts", "show", "acme", *f)
    assert "R-COV1RSMS" in shown and "RSMS" in shown


def test_bad_edits_are_refused_and_change_nothing(tmp_path: Path) -> None:
    path = tmp_path / "accounts.toml"
    f = ["--file", str(path)]
    run("accounts", "create-project", "acme", "--name", "Acme", *f)
    before = path.read_text()
    runner = CliRunner()
    for args in (
        ["accounts", "add-tag", "acme", "t", "Far Too Long Sender"],
        ["accounts", "add-tag", "nobody", "t", "RSMS"],
        ["accounts", "set-allowlist", "acme", "not-a-cidr"],
        ["accounts", "create-project", "acme", "--name", "Again"],
        ["accounts", "create-project", "Bad Id", "--name", "x"],
        ["accounts", "set-countries", "acme", "NO", "XX"],
        ["accounts", "set-countries", "acme", "Norway"],
        ["accounts", "set-number-types", "acme", "premium"],
        ["accounts", "set-limits", "acme", "--segments-per-message", "0"],
        ["accounts", "set-limits", "acme", "--daily-spend-cap", "-5"],
    ):
        result = runner.invoke(rsms, [*args, *f])
        assert result.exit_code != 0, args
        assert "Error" in result.output
    assert path.read_text() == before


def test_an_invalid_file_keeps_the_last_good_accounts(tmp_path: Path) -> None:
    path = tmp_path / "accounts.toml"
    run("accounts", "create-project", "acme", "--name", "Acme", "--file", str(path))
    out = run("accounts", "issue-key", "acme", "--file", str(path))
    key = re.search(r"API key: (sk_live_\w+)", out)
    assert key
    store = AccountStore(path)
    path.write_text("this is [not toml")
    assert store.reload() is False
    assert store.authenticate(key.group(1)) is not None


def test_destination_rules_and_caps_are_set_and_cleared(tmp_path: Path) -> None:
    path = tmp_path / "accounts.toml"
    f = ["--file", str(path)]
    run("accounts", "create-project", "acme", "--name", "Acme", *f)
    project = load_accounts(path).projects["acme"]
    assert project.allowed_countries == [] and project.allowed_number_types == []  # any country, no risky type

    run("accounts", "set-countries", "acme", "se", "NO", "NO", *f)
    run("accounts", "set-number-types", "acme", "premium_rate", "international_network", *f)
    run("accounts", "set-limits", "acme", "--segments-per-message", "4", "--daily-spend-cap", "250.50", *f)
    project = load_accounts(path).projects["acme"]
    assert project.allowed_countries == ["NO", "SE"]
    assert project.allowed_number_types == ["international_network", "premium_rate"]
    assert project.limits.segments_per_message == 4 and project.limits.daily_spend_cap == Decimal("250.50")
    shown = run("accounts", "show", "acme", *f)
    assert "Destination countries: NO, SE" in shown and "premium_rate" in shown and "daily_spend_cap=250.5" in shown

    run("accounts", "set-countries", "acme", *f)
    run("accounts", "set-number-types", "acme", *f)
    run("accounts", "set-limits", "acme", *f)
    project = load_accounts(path).projects["acme"]
    assert project.allowed_countries == [] and project.allowed_number_types == []
    assert project.limits.segments_per_message is None and project.limits.daily_spend_cap is None


def test_an_accounts_file_from_before_the_destination_rules_still_loads(tmp_path: Path) -> None:
    path = tmp_path / "accounts.toml"
    path.write_text('[projects.acme]\nname = "Acme"\nip_allowlist = []\n')
    project = load_accounts(path).projects["acme"]
    assert project.allowed_countries == [] and project.allowed_number_types == []
