"""`rsms sql`: an analyst's SELECT over the ledger's request/reply while the ledger holds
embedded chDB; read-only, within a row and a time limit. And the documented queries
(services/ledger/QUERIES.md, README) run as written and leave test traffic out."""

from __future__ import annotations

import asyncio
import json
import os
import re
import sys
from decimal import Decimal
from pathlib import Path

import pytest

from shared.ledger_queries import LedgerQueries
from tests.ledger.support import (
    PROJECT_ROOT,
    eventually,
    ledger_settings,
    make_job,
    make_outcome,
    numbers,
    publish_job,
    publish_outcome,
    publisher,
    running_ledger,
    scalar,
)

QUERIES_MD = PROJECT_ROOT / "services" / "ledger" / "QUERIES.md"
README = PROJECT_ROOT / "README.md"


def documented_queries(path: Path) -> dict[str, str]:
    """Each ```sql block that is a SELECT, by the heading (QUERIES.md) or the comment line
    (README) above it."""
    found = {}
    text = path.read_text()
    for match in re.finditer(r"```sql\n(.*?)```", text, re.DOTALL):
        heading = re.findall(r"^## (.+)$", text[: match.start()], re.MULTILINE)
        for statement in match.group(1).split(";"):
            statement = statement.strip()
            title = re.match(r"--\s*(.+)", statement)
            body = "\n".join(line for line in statement.splitlines() if not line.startswith("--")).strip()
            if body.upper().startswith("SELECT"):
                found[title.group(1) if title else heading[-1]] = body
    return found


async def rsms_sql(amqp_url: str, *args: str) -> tuple[int, str, str]:
    """`rsms sql …` as a user runs it, in its own process (the ledger runs in this one)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RSMS_")}
    env.update(RSMS_AMQP_URL=amqp_url, PYTHONPATH=str(PROJECT_ROOT))
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "cli",
        "sql",
        *args,
        cwd=PROJECT_ROOT,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


@pytest.fixture
async def ledger_with_traffic(amqp_url, clickhouse):
    """A running ledger holding: acme live, 3 NO recipients sent and 2 failed; acme test
    traffic, 4 sent and 4 failed (which no money or failure figure may count)."""
    settings = ledger_settings(amqp_url, clickhouse.dsn, clickhouse.database)
    sent = make_job(recipients=numbers(3))
    failed = make_job(recipients=numbers(2, start=41_000_000))
    test_sent = make_job(recipients=numbers(4, start=42_000_000), test=True)
    test_failed = make_job(recipients=numbers(4, start=43_000_000), test=True)
    client = clickhouse.client()
    async with running_ledger(settings), publisher(amqp_url) as broker:
        for job, status in ((sent, "sent"), (failed, "failed"), (test_sent, "sent"), (test_failed, "failed")):
            await publish_job(broker, job)
            await publish_outcome(broker, make_outcome(job, status=status))
        await eventually(
            lambda: (
                scalar(client, f"SELECT count() FROM {clickhouse.database}.sms_outcomes") == 13
                and scalar(client, f"SELECT count() FROM {clickhouse.database}.sms_requests") == 4
            ),
            what="every row recorded",
        )
        yield LedgerQueries(broker, timeout=10), clickhouse.database


async def test_the_documented_queries_run_and_leave_test_traffic_out(ledger_with_traffic):
    queries, database = ledger_with_traffic
    documented = documented_queries(QUERIES_MD) | {
        f"README: {title}": sql for title, sql in documented_queries(README).items()
    }
    assert len(documented) >= 7, documented.keys()
    results = {}
    for title, sql in documented.items():
        result = await queries.sql(sql.replace("rsms.", f"{database}."), max_rows=100, max_seconds=10)
        assert result.error is None, (title, result.error)
        results[title] = [dict(zip(result.columns, row, strict=True)) for row in result.rows]

    for title in ("Failure rate per country (latest attempt of each recipient)", "README: Failure rate per country"):
        [norway] = results[title if title in results else next(t for t in results if t.startswith(title))]
        assert norway["recipients"] == 5 and norway["sent"] == 3, (title, norway)
        assert norway["failure_rate"] == 0.4, (title, norway)
    for title in ("Monthly invoice per project", "README: Monthly invoice per project"):
        [invoice] = results[title]
        assert invoice["recipients"] == 3 and Decimal(invoice["amount"]) == Decimal("0.67") * 3, (title, invoice)


async def test_rsms_sql_prints_a_table_or_json_and_cuts_rows_at_the_limit(ledger_with_traffic, amqp_url):
    _, database = ledger_with_traffic
    statement = f"SELECT recipient, status, test FROM {database}.sms_outcomes ORDER BY recipient"
    code, out, err = await rsms_sql(amqp_url, statement)
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].split() == ["recipient", "status", "test"] and len(lines) == 2 + 13
    assert lines[2].split() == ["+4740000000", "sent", "no"]

    code, out, err = await rsms_sql(amqp_url, "--json", "--limit", "5", statement)
    assert code == 0, err
    document = json.loads(out)
    assert document["columns"] == ["recipient", "status", "test"] and document["types"][2] == "Bool"
    assert document["truncated"] is True and len(document["rows"]) == 5
    assert document["rows"][0] == {"recipient": "+4740000000", "status": "sent", "test": False}
    assert "more matched" not in err  # JSON says it in `truncated`


async def test_rsms_sql_refuses_anything_but_a_select_before_sending_it(amqp_url):
    # No ledger runs: the refusal cannot have come from it.
    code, _, err = await rsms_sql(amqp_url, "DROP TABLE rsms.sms_requests")
    assert code == 2 and "only SELECT (or WITH … SELECT) is allowed, not DROP" in err, err


async def test_the_ledger_runs_it_read_only_within_the_time_limit(ledger_with_traffic, amqp_url):
    queries, database = ledger_with_traffic
    # Sent past the command's check (a direct query): the ledger checks again ...
    refused = await queries.sql(
        f"INSERT INTO {database}.sms_requests SELECT * FROM {database}.sms_requests", max_rows=10, max_seconds=5
    )
    assert refused.error is not None and "only SELECT" in refused.error
    # ... and ClickHouse refuses whatever a SELECT could reach beyond reading, or lift.
    reaching_out = await queries.sql("SELECT * FROM file('/etc/passwd', 'LineAsString')", max_rows=10, max_seconds=5)
    assert reaching_out.error is not None and "readonly" in reaching_out.error.lower()
    # A statement's own SETTINGS cannot lift the limits: the wrapping query's come last.
    lifting = await queries.sql(
        "SELECT * FROM file('/etc/passwd', 'LineAsString') SETTINGS readonly = 0", max_rows=10, max_seconds=5
    )
    assert lifting.error is not None and "readonly" in lifting.error.lower()
    still = await queries.sql("SELECT getSetting('readonly') AS ro SETTINGS readonly = 0", max_rows=10, max_seconds=5)
    assert still.rows == [[1]], still

    code, out, err = await rsms_sql(amqp_url, "--max-seconds", "0.5", "SELECT count() FROM numbers(100000000000)")
    assert code == 1 and "Timeout exceeded" in err, (out, err)

    # The read-only settings were the query's only: the ledger still records.
    job = make_job(recipients=numbers(1, start=44_000_000))
    async with publisher(amqp_url) as broker:
        await publish_job(broker, job)
    result = None

    async def recorded() -> bool:
        nonlocal result
        result = await queries.sql(f"SELECT count() FROM {database}.sms_requests", max_rows=10, max_seconds=5)
        return result.error is None and result.rows == [[5]]

    await eventually(recorded, what="the new request recorded after the read-only queries")
