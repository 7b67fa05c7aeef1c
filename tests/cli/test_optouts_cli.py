"""`rsms optouts` on the real Redis (the list ingest reads) and `rsms accounts
add-inbound-number` on a real accounts file."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from click.testing import CliRunner, Result
from redis.asyncio import Redis

from cli.main import rsms
from shared.accounts import load_accounts
from shared.optouts import opt_out_key


def run(runner: CliRunner, *args: str) -> Result:
    return runner.invoke(rsms, list(args), catch_exceptions=False)


def members(redis_url: str, project: str) -> set[str]:
    async def read() -> set[str]:
        client = Redis.from_url(redis_url, decode_responses=True)
        try:
            return set(await client.smembers(opt_out_key(project)))
        finally:
            await client.aclose()

    return asyncio.run(read())


def test_optouts_add_list_remove_per_project(redis_url: str, tmp_path: Path) -> None:
    file = tmp_path / "accounts.toml"
    runner = CliRunner(env={"RSMS_REDIS_URL": redis_url, "RSMS_ACCOUNTS_FILE": str(file)})
    for project in ("acme", "other"):
        assert run(runner, "accounts", "create-project", project, "--name", project.title()).exit_code == 0

    assert "Added 2" in run(runner, "optouts", "add", "acme", "+4741234567", "+4741234568").output
    assert "Added 0" in run(runner, "optouts", "add", "acme", "+4741234567").output  # already there
    assert members(redis_url, "acme") == {"+4741234567", "+4741234568"}
    assert members(redis_url, "other") == set()

    table = run(runner, "optouts", "list", "acme").output
    assert table.splitlines()[0] == "number" and "+4741234567" in table and "+4741234568" in table
    assert json.loads(run(runner, "optouts", "list", "acme", "--json").output) == [
        {"number": "+4741234567"},
        {"number": "+4741234568"},
    ]
    assert "Nobody opted out of other" in run(runner, "optouts", "list", "other").output
    assert json.loads(run(runner, "optouts", "list", "other", "--json").output) == []

    assert "Removed 1" in run(runner, "optouts", "remove", "acme", "+4741234567").output
    assert members(redis_url, "acme") == {"+4741234568"}

    bad = runner.invoke(rsms, ["optouts", "add", "acme", "41234567"])
    assert bad.exit_code != 0 and "not E.164" in bad.output
    unknown = runner.invoke(rsms, ["optouts", "add", "nobody", "+4741234567"])
    assert unknown.exit_code != 0 and "no project 'nobody'" in unknown.output
    assert members(redis_url, "nobody") == set()


def test_inbound_numbers_are_added_listed_and_removed(tmp_path: Path) -> None:
    file = tmp_path / "accounts.toml"
    runner = CliRunner(env={"RSMS_ACCOUNTS_FILE": str(file)})
    for project in ("acme", "other"):
        run(runner, "accounts", "create-project", project, "--name", project.title())
    assert "go to acme" in run(runner, "accounts", "add-inbound-number", "acme", "+4790000001").output
    run(runner, "accounts", "add-inbound-number", "acme", "2222")

    taken = runner.invoke(rsms, ["accounts", "add-inbound-number", "other", "4790000001"])
    assert taken.exit_code != 0 and "belongs to project 'acme'" in taken.output
    malformed = runner.invoke(rsms, ["accounts", "add-inbound-number", "other", "not-a-number!"])
    assert malformed.exit_code != 0 and "inbound number" in malformed.output

    assert load_accounts(file).projects["acme"].inbound_numbers == ["+4790000001", "2222"]
    listing = run(runner, "accounts", "list").output
    assert "inbound numbers" in listing.splitlines()[0] and "+4790000001, 2222" in listing
    assert "Inbound numbers: +4790000001, 2222" in run(runner, "accounts", "show", "acme").output

    run(runner, "accounts", "remove-inbound-number", "acme", "+2222")  # as a carrier may spell it
    assert load_accounts(file).projects["acme"].inbound_numbers == ["+4790000001"]
    missing = runner.invoke(rsms, ["accounts", "remove-inbound-number", "other", "+4790000001"])
    assert missing.exit_code != 0 and "has no inbound number" in missing.output
