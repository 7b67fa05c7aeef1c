"""`--json` on every listing: the same data as the table, for scripts."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from pathlib import Path

import aio_pika
from click.testing import CliRunner

from cli.main import rsms
from cli.table import json_key, print_table, table_records
from shared.contracts import DeadLetter
from shared.topology import DEAD_LETTER_QUEUE


def invoke(args: list[str], **env: str) -> str:
    result = CliRunner(env=env).invoke(rsms, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def test_a_table_and_its_json_carry_the_same_rows(capsys):
    headers = ["#", "live key", "test keys", "allow-list", "cost"]
    rows = [(1, None, 2, ["10.0.0.0/8"], "1.34 NOK")]
    assert table_records(headers, rows) == [
        {"index": 1, "live_key": None, "test_keys": 2, "allow_list": ["10.0.0.0/8"], "cost": "1.34 NOK"}
    ]
    print_table(headers, [], empty="nothing", as_json=True)
    assert json.loads(capsys.readouterr().out) == []  # an empty listing is [], not the "nothing" text
    assert json_key("dead-lettered (UTC)") == "dead_lettered_utc"


def test_accounts_list_and_show_as_json(tmp_path: Path):
    file = str(tmp_path / "accounts.toml")
    invoke(["accounts", "create-project", "acme", "--name", "Acme AS", "--file", file])
    invoke(["accounts", "add-tag", "acme", "billing", "Acme", "--file", file])
    invoke(["accounts", "issue-key", "acme", "--test", "--file", file])
    invoke(["accounts", "set-allowlist", "acme", "10.0.0.0/8", "--file", file])
    invoke(["accounts", "add-inbound-number", "acme", "+4790000001", "--file", file])
    invoke(["accounts", "set-countries", "acme", "SE", "no", "--file", file])
    invoke(["accounts", "set-number-types", "acme", "premium_rate", "--file", file])

    [project] = json.loads(invoke(["accounts", "list", "--json", "--file", file]))
    assert project == {
        "project": "acme",
        "name": "Acme AS",
        "live_key": None,
        "test_keys": 1,
        "tags": 1,
        "active_tags": 1,
        "allow_list": ["10.0.0.0/8"],
        "inbound_numbers": ["+4790000001"],
        "countries": ["NO", "SE"],
        "number_types": ["premium_rate"],
        "store_bodies": True,
        "suspended": False,
    }
    table = invoke(["accounts", "list", "--file", file])
    assert table.splitlines()[0].split()[:2] == ["project", "name"] and "10.0.0.0/8" in table

    shown = json.loads(invoke(["accounts", "show", "acme", "--json", "--file", file]))
    assert shown["tags"] == [{"tag": "billing", "sender": "Acme", "active": True}]
    assert [k["kind"] for k in shown["keys"]] == ["test"] and shown["keys"][0]["key_id"].startswith("key_")
    assert shown["ip_allowlist"] == ["10.0.0.0/8"] and shown["limits"] == {}
    assert shown["inbound_numbers"] == ["+4790000001"]
    assert shown["allowed_countries"] == ["NO", "SE"] and shown["allowed_number_types"] == ["premium_rate"]


def test_settings_as_json():
    rows = json.loads(invoke(["settings", "--json"]))
    port = next(r for r in rows if r["variable"] == "RSMS_INGEST_PORT")
    assert port == {"variable": "RSMS_INGEST_PORT", "read_by": "ingest", "default": "8080", "meaning": port["meaning"]}


def test_blocklist_list_as_json(redis_url: str):
    invoke(["blocklist", "add", "+4712345678"], RSMS_REDIS_URL=redis_url)
    assert json.loads(invoke(["blocklist", "list", "--json"], RSMS_REDIS_URL=redis_url)) == [{"number": "+4712345678"}]


def test_dlq_list_as_json(amqp_url: str):
    letter = DeadLetter(
        reason="invalid_job",
        detail="schema_version 7 is not known",
        dead_lettered_at=datetime(2026, 11, 24, 21, 30, tzinfo=UTC),
        body="{}",
    )

    async def put(with_letter: bool) -> None:
        connection = await aio_pika.connect(amqp_url)
        async with connection:
            channel = await connection.channel()
            await channel.declare_queue(DEAD_LETTER_QUEUE.name, durable=True)
            if not with_letter:
                return
            await channel.default_exchange.publish(
                aio_pika.Message(letter.model_dump_json().encode()), routing_key=DEAD_LETTER_QUEUE.name
            )

    asyncio.run(put(with_letter=False))
    assert json.loads(invoke(["dlq", "list", "--json"], RSMS_AMQP_URL=amqp_url)) == []
    asyncio.run(put(with_letter=True))
    assert json.loads(invoke(["dlq", "list", "--json"], RSMS_AMQP_URL=amqp_url)) == [
        {
            "index": 1,
            "dead_lettered_utc": "2026-11-24T21:30:00+00:00",
            "reason": "invalid_job",
            "message_id": None,
            "attempts": 0,
            "recipients": None,
            "detail": "schema_version 7 is not known",
        }
    ]
    assert "2026-11-24 21:30:00" in invoke(["dlq", "list"], RSMS_AMQP_URL=amqp_url)  # the table: still readable
