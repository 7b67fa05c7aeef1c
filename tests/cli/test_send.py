"""`rsms send` against the real ingest server: through the SDK, any number of recipients."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from cli.main import rsms
from shared.topology import DISPATCH_QUEUE
from tests.ingest.conftest import StartIngest, start_ingest
from tests.support.accounts import add_project
from tests.support.queues import drain

__all__ = ["start_ingest"]


def run(*args: str, key: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(rsms, list(args), env={"SMS_API_KEY": key})
    return result.exit_code, result.stdout, result.stderr


async def test_rsms_send_queues_any_number_of_recipients_in_requests_of_1000(
    start_ingest: StartIngest, accounts_file: Path, amqp_url: str, tmp_path: Path
) -> None:
    keys = add_project(accounts_file)
    ingest = start_ingest()
    numbers = [f"+4791{i:06d}" for i in range(1200)]
    listing = tmp_path / "recipients.txt"
    listing.write_text("# campaign 7\n" + "\n".join(numbers[1:]) + "\n")

    code, out, err = run(
        "send",
        "--url",
        ingest.url,
        "--tag",
        "billing",
        "--to",
        numbers[0],
        "--to-file",
        str(listing),
        "-m",
        "Your invoice is due.",
        "--json",
        key=keys.live_key,
    )
    assert code == 0, (out, err)
    rows = json.loads(out)
    assert [(r["index"], r["recipients"], r["segments"], r["estimated_cost"]) for r in rows] == [
        (1, 1000, 1000, "670.00 NOK"),
        (2, 200, 200, "134.00 NOK"),
    ]
    assert "2/2 requests, 1,200/1,200 recipients queued" in err
    jobs = await drain(amqp_url, DISPATCH_QUEUE.name, expect=2)
    assert sorted(j["body"]["message_id"] for j in jobs) == sorted(r["message_id"] for r in rows)

    code, out, _ = run(
        "send", "--url", ingest.url, "--tag", "billing", "--to", "+4712345678", "-m", "Hi", key=keys.test_key
    )
    assert code == 0 and "message id" in out.splitlines()[0] and "0.67 NOK" in out


def test_rsms_send_says_what_the_gateway_refused(start_ingest: StartIngest, accounts_file: Path) -> None:
    keys = add_project(accounts_file)
    ingest = start_ingest()
    code, _, err = run(
        "send", "--url", ingest.url, "--tag", "nope", "--to", "+4712345678", "-m", "Hi", key=keys.live_key
    )
    assert code == 1
    assert "INVALID_TAG: Tag 'nope' not found or inactive" in err and "1 recipient(s) not sent" in err
    code, _, err = run("send", "--url", ingest.url, "--tag", "billing", "-m", "Hi", key=keys.live_key)
    assert code == 2 and "no recipients" in err
