"""The whole gateway as `rsms up` starts it: real processes, real RabbitMQ and Redis, chDB.

The contract's examples go in over HTTP; they must come out at the provider simulator and in
the ledger with the right segments and cost; Ctrl-C must stop every process.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from shared import accounts as store
from tests.support.rsms_up import PORT_NAMES, Gateway, eventually, rsms_up_runner

pytestmark = pytest.mark.slow

PROJECT_ROOT = Path(__file__).resolve().parents[2]
SIM_ADMIN = {"Authorization": "Bearer sim-token"}  # the simulator's default token
INVOICE = (
    "Dear customer, this is a reminder that your invoice #12345 for the amount of 500 NOK is due on "
    "January 15, 2026. Please make payment before the due date to avoid late fees. You can pay via our "
    "website, mobile app, or bank transfer. For questions, contact support@example.com. Thank you!"
)
EXAMPLES = [
    # (tag, recipients, message, segments per recipient, estimated cost)
    ("RS-COV1RSMS", ["+4712345678"], "Hello! This is a test message from our system.", 1, "0.67 NOK"),
    (
        "RS-COV1RSMS",
        ["+4712345678", "+4787654321", "+46701234567"],
        "Important notification: Your account has been updated.",
        1,
        "2.01 NOK",
    ),
    ("billing", ["+4712345678"], INVOICE, 2, "1.34 NOK"),
]


@pytest.fixture
def gateway(
    tmp_path: Path, amqp_url: str, redis_url: str, free_port: Callable[[], int]
) -> Iterator[tuple[Callable[[], Gateway], dict[str, int]]]:
    """Starts `rsms up` (again, if asked) from one directory, as a user would."""
    ports = {name: free_port() for name in PORT_NAMES}
    with rsms_up_runner(tmp_path, amqp_url, redis_url, ports) as start:
        yield start, ports


def test_rsms_up_runs_the_whole_gateway(gateway: tuple[Callable[[], Gateway], dict[str, int]], tmp_path: Path) -> None:
    start, ports = gateway
    up = start()
    key = up.wait_for(r"Bearer (sk_test_[A-Za-z0-9]{40})").group(1)
    up.wait_for(r"RSMS Gateway is up")
    api = f"http://127.0.0.1:{ports['ingest']}"

    # The printed curl command works: a test key, queued, never sent for real.
    demo = httpx.post(
        f"{api}/api/v1/sms/send",
        headers={"Authorization": f"Bearer {key}"},
        json={"tag": "demo", "recipients": ["+4712345678"], "message": "Hello from RSMS Gateway!"},
    )
    assert demo.status_code == 200 and demo.json()["data"]["status"] == "queued", demo.text

    # A live key and the contract's tags, added while it runs (ingest reloads the file).
    accounts_file = tmp_path / "var" / "accounts.toml"
    with store.editing(accounts_file) as data:
        _, live_key = store.issue_key(data, "demo", "live")
        store.set_tag(data, "demo", "RS-COV1RSMS", "RSMS")
        store.set_tag(data, "demo", "billing", "Billing")
    headers = {"Authorization": f"Bearer {live_key}"}
    eventually(
        lambda: httpx.post(f"{api}/api/v1/sms/send", headers=headers, content=b"{}").status_code == 400,
        "the new key to be loaded",
    )
    time.sleep(2)  # each ingest worker re-reads the file within a second: let the other one catch up too

    sent: dict[str, tuple[list[str], int, str]] = {}
    for tag, recipients, message, segments, cost in EXAMPLES:
        response = httpx.post(
            f"{api}/api/v1/sms/send", headers=headers, json={"tag": tag, "recipients": recipients, "message": message}
        )
        assert response.status_code == 200, response.text
        data = response.json()["data"]
        assert (data["smsSegmentsPerRecipient"], data["estimatedCost"]) == (segments, cost)
        sent[data["messageId"]] = (recipients, segments, cost)

    # At the provider: every recipient of every live message exactly once, with its sender.
    sim = f"http://127.0.0.1:{ports['sim']}"
    expected = sorted(r for recipients, _, _ in sent.values() for r in recipients)
    delivered = eventually(
        lambda: (m := httpx.get(f"{sim}/admin/messages", headers=SIM_ADMIN).json()) and len(m) >= len(expected) and m,
        "the simulator to receive every recipient",
    )
    assert sorted(m["to"] for m in delivered) == expected
    assert {m["from"] for m in delivered} == {"RSMS", "Billing"}
    assert httpx.get(f"{sim}/admin/stats", headers=SIM_ADMIN).json().get("duplicates", 0) == 0

    # In ClickHouse, through the ledger: each recipient sent, with its segments and cost.
    for message_id, (recipients, segments, cost) in sent.items():

        def status(message_id: str = message_id) -> dict[str, Any] | None:
            response = httpx.get(f"{api}/api/v1/sms/{message_id}", headers=headers)
            body = response.json().get("data") if response.status_code == 200 else None
            return body if body and body["status"] == "sent" else None

        data = eventually(status, f"message {message_id} recorded as sent")
        assert sorted(r["recipient"] for r in data["recipients"]) == sorted(recipients)

        # The simulator's delivery receipts come back: each recipient delivered, out of the box.
        def delivered(message_id: str = message_id) -> dict[str, Any] | None:
            body = httpx.get(f"{api}/api/v1/sms/{message_id}", headers=headers).json()["data"]
            return body if all(r["deliveryStatus"] == "delivered" for r in body["recipients"]) else None

        data = eventually(delivered, f"message {message_id} delivered")
        assert all(r["smsSegments"] == segments for r in data["recipients"])
        assert data["cost"] == cost
        assert data["test"] is False

    today = time.strftime("%Y-%m-%d", time.gmtime())
    usage = httpx.get(f"{api}/api/v1/usage?from={today}&to={today}&groupBy=tag", headers=headers).json()["data"]
    by_tag = {row["tag"]: row for row in usage["rows"]}
    assert by_tag["RS-COV1RSMS"]["smsSegments"] == 4 and by_tag["RS-COV1RSMS"]["cost"] == "2.68 NOK"
    assert by_tag["billing"]["smsSegments"] == 2 and by_tag["billing"]["cost"] == "1.34 NOK"
    assert "demo" not in by_tag  # test traffic is never billed

    # Every service answers its health and metrics endpoints on its ops port; the API's
    # port serves no metrics.
    assert httpx.get(f"{api}/metrics").status_code == 404
    for port in (ports["ingest_ops"], ports["dispatcher"], ports["ledger"]):
        assert httpx.get(f"http://127.0.0.1:{port}/health/ready").status_code == 200
    expected_metrics = {
        "ingest_ops": ['rsms_ingest_requests_total{code="OK"', "rsms_ingest_request_seconds_bucket"],
        "dispatcher": [
            "rsms_dispatcher_recipients_total",
            "rsms_dispatcher_accept_to_send_seconds_count",
            "rsms_dispatcher_retries_total",
            "rsms_dispatcher_dead_lettered_total",
        ],
        "ledger": ["rsms_ledger_rows_written_total", "rsms_ledger_insert_seconds_bucket", "rsms_ledger_batch_rows"],
    }
    for service, names in expected_metrics.items():
        text = httpx.get(f"http://127.0.0.1:{ports[service]}/metrics").text
        for name in names:
            assert name in text, (service, name)
    depths = eventually(
        lambda: (
            "rsms_dispatcher_queue_depth{" in (t := httpx.get(f"http://127.0.0.1:{ports['dispatcher']}/metrics").text)
            and t
        ),
        "queue depth metrics",
    )
    assert 'queue="rsms.dispatch.jobs"' in depths

    # The status page (the ledger's ops port) sees every service ready and the live sends.
    status = eventually(
        lambda: (
            (s := httpx.get(f"http://127.0.0.1:{ports['ledger']}/status.json").json())
            and all(service["state"] == "ready" for service in s["services"])
            and s
        ),
        "every service ready on the status page",
    )
    assert {service["name"] for service in status["services"]} == {"ingest", "dispatcher-1", "ledger"}
    assert status["provider"] == "ok"
    assert sum(minute["sent"] for minute in status["traffic"]) > 0

    # Ctrl-C stops everything cleanly.
    up.process.send_signal(signal.SIGINT)
    assert up.process.wait(40) == 0
    up.wait_for(r"Stopping")
    for port in ports.values():
        with pytest.raises(httpx.TransportError):
            httpx.get(f"http://127.0.0.1:{port}/", timeout=1)
    output = "\n".join(up.lines)
    assert live_key not in output and "Hello! This is a test message" not in output  # no keys or bodies in logs

    # Started again: the embedded ClickHouse kept its data, and no second demo key is made.
    again = start()
    again.wait_for(r"RSMS Gateway is up")
    again.wait_for(r"rsms accounts issue-key demo --test")
    assert not any("sk_test_" in line for line in again.lines)
    message_id = next(iter(sent))

    def kept() -> bool:
        response = httpx.get(f"{api}/api/v1/sms/{message_id}", headers=headers, timeout=15)
        return response.status_code == 200 and response.json()["data"]["status"] == "sent"

    eventually(kept, "the earlier message, from the ledger's kept data")
    again.process.send_signal(signal.SIGINT)
    assert again.process.wait(40) == 0
