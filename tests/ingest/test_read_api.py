"""GET /api/v1/sms/{messageId} and GET /api/v1/usage: through ingest, the broker and a real ledger."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from litestar.testing import AsyncTestClient

from services.ingest.app import create_app
from shared.contracts import SmsJob
from tests.ledger.support import eventually, make_outcome, publish_outcome, publisher
from tests.support.accounts import ProjectKeys, add_project
from tests.support.queues import drain


@pytest.fixture
def projects(accounts_file: Path) -> tuple[ProjectKeys, ProjectKeys]:
    return add_project(accounts_file, "acme"), add_project(accounts_file, "rival")


@pytest.fixture
async def client(ingest_settings: Any, projects: Any, ledger: None) -> AsyncIterator[AsyncTestClient[Any]]:
    async with AsyncTestClient(app=create_app(ingest_settings)) as test_client:
        yield test_client


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def test_status_and_usage_of_a_sent_message(
    client: AsyncTestClient[Any], projects: tuple[ProjectKeys, ProjectKeys], amqp_url: str
) -> None:
    acme, rival = projects
    sent = await client.post(
        "/api/v1/sms/send",
        json={"tag": "billing", "recipients": ["+4712345678", "+4687654321"], "message": "Invoice due"},
        headers=bearer(acme.live_key),
    )
    assert sent.status_code == 200, sent.text
    message_id = sent.json()["data"]["messageId"]

    async def recorded() -> bool:
        response = await client.get(f"/api/v1/sms/{message_id}", headers=bearer(acme.live_key))
        return response.status_code == 200

    await eventually(recorded, what="the ledger recording the accepted message")
    status = (await client.get(f"/api/v1/sms/{message_id}", headers=bearer(acme.live_key))).json()["data"]
    assert status["status"] == "queued"
    assert {r["recipient"]: r["status"] for r in status["recipients"]} == {
        "+4712345678": "queued",
        "+4687654321": "queued",
    }

    # The dispatcher's outcome for this job (the dispatcher has its own end-to-end tests).
    [job_message] = await drain(amqp_url, "rsms.dispatch.jobs", expect=1)
    job = SmsJob.model_validate(job_message["body"])
    async with publisher(amqp_url) as broker:
        await publish_outcome(broker, make_outcome(job, status="sent"))

    async def delivered() -> bool:
        response = await client.get(f"/api/v1/sms/{message_id}", headers=bearer(acme.live_key))
        return bool(response.json()["data"]["status"] == "sent")

    await eventually(delivered, what="the outcome in the ledger")
    response = await client.get(f"/api/v1/sms/{message_id}", headers=bearer(acme.live_key))
    assert response.headers["X-RateLimit-Limit"] == "600"  # the read limit, not the send limit
    data = response.json()["data"]
    assert data["recipientCount"] == 2 and data["totalSmsSegments"] == 2
    assert data["cost"] == "1.34 NOK"
    assert {r["country"] for r in data["recipients"]} == {"NO", "SE"}

    # Another project's key cannot see it, and cannot tell it exists.
    foreign = await client.get(f"/api/v1/sms/{message_id}", headers=bearer(rival.live_key))
    unknown = await client.get(f"/api/v1/sms/{uuid.uuid4()}", headers=bearer(rival.live_key))
    assert foreign.status_code == unknown.status_code == 404
    assert foreign.json()["error"]["message"] == unknown.json()["error"]["message"] == "Message not found"

    today = datetime.now(UTC).date().isoformat()
    usage = await client.get(f"/api/v1/usage?from={today}&to={today}&groupBy=country", headers=bearer(acme.live_key))
    assert usage.status_code == 200, usage.text
    rows = {row["country"]: row for row in usage.json()["data"]["rows"]}
    assert rows["NO"]["recipients"] == 1 and rows["NO"]["cost"] == "0.67 NOK"
    assert rows["SE"]["smsSegments"] == 1
    assert usage.json()["data"]["totals"]["cost"] == "1.34 NOK"
    rival_usage = await client.get(f"/api/v1/usage?from={today}&to={today}", headers=bearer(rival.live_key))
    assert rival_usage.json()["data"]["rows"] == []


async def test_read_errors_use_the_contract_shape(
    client: AsyncTestClient[Any], projects: tuple[ProjectKeys, ProjectKeys]
) -> None:
    acme, _ = projects
    assert (await client.get(f"/api/v1/sms/{uuid.uuid4()}")).json()["error"]["code"] == "UNAUTHORIZED"
    bad_id = await client.get("/api/v1/sms/not-a-uuid", headers=bearer(acme.live_key))
    assert bad_id.status_code == 400
    assert bad_id.json()["error"]["details"] == ["messageId: not a UUID: 'not-a-uuid'"]
    bad_usage = await client.get("/api/v1/usage?from=2026-13-01&groupBy=week", headers=bearer(acme.live_key))
    assert bad_usage.status_code == 400
    details = bad_usage.json()["error"]["details"]
    assert any(d.startswith("from:") for d in details)
    assert any(d.startswith("to:") for d in details)
    assert any(d.startswith("groupBy:") for d in details)
