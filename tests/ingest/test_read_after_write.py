"""Read after write, and the read limit: `rsms ingest` as served, the real broker, a real ledger."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from shared.ledger_queries import LedgerQueries, message_status_body
from tests.ingest.conftest import StartIngest
from tests.ledger.support import eventually, publisher
from tests.support.accounts import ProjectKeys, add_project

pytestmark = pytest.mark.slow

SEND = "/api/v1/sms/send"


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture
def keys(accounts_file: Path) -> ProjectKeys:
    return add_project(accounts_file, "acme")


def payload(n: int) -> dict[str, Any]:
    return {"tag": "billing", "recipients": [f"+4712345{n:03d}", "+46701234567"], "message": f"Reminder {n}"}


@pytest.mark.parametrize("idempotent", [False, True], ids=["plain", "idempotency-key"])
async def test_a_status_read_right_after_the_200_answers_queued(
    start_ingest: StartIngest, keys: ProjectKeys, ledger: None, idempotent: bool
) -> None:
    served = start_ingest(workers=2)  # the read may reach the other worker than the send
    async with httpx.AsyncClient(base_url=served.url, headers=bearer(keys.live_key), timeout=15) as client:
        for n in range(25):
            headers = {"Idempotency-Key": f"reminder-{n}"} if idempotent else {}
            sent = await client.post(SEND, json=payload(n), headers=headers)
            assert sent.status_code == 200, sent.text
            accepted = sent.json()["data"]

            # At once, no sleep: the ledger has usually not recorded it yet.
            status = await client.get(f"/api/v1/sms/{accepted['messageId']}")

            assert status.status_code == 200, (n, status.text)
            data = status.json()["data"]
            assert data["messageId"] == accepted["messageId"]
            assert data["status"] == "queued"
            assert data["tag"] == "billing" and data["sender"] == "Billing"
            assert data["recipientCount"] == 2
            assert data["totalSmsSegments"] == accepted["totalSmsSegments"]
            assert data["estimatedCost"] == accepted["estimatedCost"] == "1.34 NOK"
            assert data["timestamp"] == accepted["timestamp"]
            assert data["summary"]["queued"] == 2
            assert {(r["recipient"], r["country"], r["status"]) for r in data["recipients"]} == {
                (f"+4712345{n:03d}", "NO", "queued"),
                ("+46701234567", "SE", "queued"),
            }


async def test_the_early_answer_is_the_ledgers_answer_to_come(
    start_ingest: StartIngest, keys: ProjectKeys, ledger: None, amqp_url: str
) -> None:
    """What ingest answers from its record is byte for byte what the ledger answers once it
    has recorded the message (and no dispatcher has touched it)."""
    served = start_ingest()
    async with httpx.AsyncClient(base_url=served.url, headers=bearer(keys.live_key), timeout=15) as client:
        sent = await client.post(SEND, json=payload(7))
        early = await client.get(f"/api/v1/sms/{sent.json()['data']['messageId']}")
    assert early.status_code == 200
    message_id = uuid.UUID(sent.json()["data"]["messageId"])
    async with publisher(amqp_url) as broker:
        ledger_queries = LedgerQueries(broker, timeout=10)

        async def recorded() -> bool:
            return (await ledger_queries.message_status(keys.project, message_id)).found

        await eventually(recorded, what="the ledger recording the message")
        report = await ledger_queries.message_status(keys.project, message_id)
    assert early.json() == message_status_body(report)


async def test_another_project_cannot_read_an_accepted_message(
    start_ingest: StartIngest, accounts_file: Path, keys: ProjectKeys, ledger: None
) -> None:
    rival = add_project(accounts_file, "rival")
    served = start_ingest()
    async with httpx.AsyncClient(base_url=served.url, timeout=15) as client:
        sent = await client.post(SEND, json=payload(1), headers=bearer(keys.live_key))
        message_id = sent.json()["data"]["messageId"]
        foreign = await client.get(f"/api/v1/sms/{message_id}", headers=bearer(rival.live_key))
        unknown = await client.get(f"/api/v1/sms/{uuid.uuid4()}", headers=bearer(rival.live_key))
    assert foreign.status_code == unknown.status_code == 404
    assert foreign.json()["error"]["message"] == unknown.json()["error"]["message"] == "Message not found"


async def test_reads_have_their_own_limit_of_600_a_minute(
    start_ingest: StartIngest, keys: ProjectKeys, ledger: None
) -> None:
    served = start_ingest()  # the default limits: 100 sends, 600 reads a minute per key
    async with httpx.AsyncClient(base_url=served.url, headers=bearer(keys.live_key), timeout=15) as client:
        sent = await client.post(SEND, json=payload(1))
        assert sent.headers["X-RateLimit-Remaining"] == "99"
        status_url = f"/api/v1/sms/{sent.json()['data']['messageId']}"

        # A read counts whatever it answers (like a send). Most of these ask for an id that
        # is no UUID, answered without asking the ledger, so that the 600 fit well within
        # the sliding minute even on a busy machine; every 20th reads the real message.
        for n, remaining in enumerate(range(599, -1, -1)):
            real = n % 20 == 0
            read = await client.get(status_url if real else "/api/v1/sms/not-a-uuid")
            assert read.status_code == (200 if real else 400), read.text
            assert read.headers["X-RateLimit-Limit"] == "600"
            assert read.headers["X-RateLimit-Remaining"] == str(remaining)

        refused = await client.get(status_url)
        assert refused.status_code == 429
        assert refused.json()["error"]["code"] == "RATE_LIMIT_EXCEEDED"
        assert refused.headers["X-RateLimit-Limit"] == "600"
        assert int(refused.headers["Retry-After"]) >= 1
        usage = await client.get("/api/v1/usage?from=2026-01-01&to=2026-01-31")
        assert usage.status_code == 429  # usage reads share the read window
        anonymous = await client.get(status_url, headers={"Authorization": ""})
        assert anonymous.status_code == 401  # nothing counted: the default read limit
        assert anonymous.headers["X-RateLimit-Limit"] == anonymous.headers["X-RateLimit-Remaining"] == "600"

        # Sends still pass, and the 600 reads took none of the send limit.
        again = await client.post(SEND, json=payload(2))
        assert again.status_code == 200, again.text
        assert again.headers["X-RateLimit-Limit"] == "100"
        assert again.headers["X-RateLimit-Remaining"] == "98"


async def test_reads_do_not_consume_the_send_limit(start_ingest: StartIngest, keys: ProjectKeys, ledger: None) -> None:
    served = start_ingest(requests_per_minute="3")
    async with httpx.AsyncClient(base_url=served.url, headers=bearer(keys.live_key), timeout=15) as client:
        sent = await client.post(SEND, json=payload(1))
        for _ in range(10):
            read = await client.get(f"/api/v1/sms/{sent.json()['data']['messageId']}")
            assert read.status_code == 200
        for remaining in (1, 0):
            response = await client.post(SEND, json=payload(remaining))
            assert response.status_code == 200, response.text
            assert response.headers["X-RateLimit-Remaining"] == str(remaining)
        assert (await client.post(SEND, json=payload(9))).status_code == 429
        # ... and a key over its send limit can still read.
        assert (await client.get(f"/api/v1/sms/{sent.json()['data']['messageId']}")).status_code == 200
