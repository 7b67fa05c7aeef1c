"""The send endpoint in front of Litestar (`asgi_entry.py`, `send_endpoint.py`): it takes
every POST to the send path, answers exactly as Litestar's route for the same path does,
and leaves Litestar everything Litestar would answer differently. Against the real Redis
and RabbitMQ."""

from __future__ import annotations

import json
from typing import Any

import pytest
from litestar import Litestar
from litestar._asgi.utils import is_valid_host
from litestar.testing import AsyncTestClient
from structlog.testing import capture_logs

from services.ingest.accepted_job import AcceptedJob
from services.ingest.app import create_app
from services.ingest.publisher import JobPublisher
from services.ingest.send import SendService
from tests.support.accounts import ProjectKeys

SEND = "/api/v1/sms/send"
VALID = b'{"tag": "R-COV1RSMS", "recipients": ["+4712345678"], "message": "hi"}'
JSON = {"Content-Type": "application/json"}


def bearer(key: str, **more: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}", **JSON, **more}


def test_litestar_still_refuses_hosts_by_the_rule_the_send_endpoint_asks_it_for() -> None:
    # Under Litestar's public API (asgi_entry.py): fails here if an upgrade moves or changes it.
    assert is_valid_host(b"api.rsms.no") and is_valid_host(b"127.0.0.1:8000") and is_valid_host(b"[::1]:80")
    assert not is_valid_host(b"api.rsms.no/x") and not is_valid_host(b"a b") and not is_valid_host(b"a\\b")


async def test_a_send_never_reaches_litestar(
    client: AsyncTestClient[Any], keys: ProjectKeys, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def refuse(*args: object) -> None:
        raise AssertionError("Litestar was asked")

    monkeypatch.setattr(Litestar, "__call__", refuse)
    assert (await client.post(SEND, content=VALID, headers=bearer(keys.live_key))).status_code == 200
    assert (await client.post(SEND, content=VALID, headers=JSON)).status_code == 401
    with pytest.raises(AssertionError, match="Litestar was asked"):
        await client.get("/api/v1/usage")


def comparable(response: Any) -> tuple[int, list[tuple[bytes, bytes]], dict[str, Any]]:
    """Status, headers in order and body, without what differs from one request to the next."""
    varying = {b"x-ratelimit-remaining", b"x-ratelimit-reset"}
    headers = [(name, b"" if name in varying else value) for name, value in response.headers.raw]
    body = json.loads(response.content)
    if response.status_code == 200:
        body["data"] |= {"messageId": "", "timestamp": ""}
    return response.status_code, headers, body


@pytest.mark.parametrize(
    ("body", "headers", "status"),
    [
        (VALID, "key", 200),
        (VALID, "none", 401),
        (VALID, "wrong key", 401),
        (b"tag=x", "form", 400),
        (b'{"tag": "R-COV1RSMS", "recipients": ["123"], "message": ""}', "key", 400),
        (b'{"tag": ', "key", 400),
        (VALID, "big headers", 431),
        (VALID, "declared too large", 413),
        (VALID, "bad idempotency key", 400),
    ],
)
async def test_the_send_endpoint_and_litestars_route_answer_alike(
    client: AsyncTestClient[Any], keys: ProjectKeys, body: bytes, headers: str, status: int
) -> None:
    sent = {
        "key": bearer(keys.live_key),
        "none": JSON,
        "wrong key": bearer("sk_live_" + "x" * 40),
        "form": bearer(keys.live_key) | {"Content-Type": "application/x-www-form-urlencoded"},
        "big headers": bearer(keys.live_key, **{"X-Padding": "x" * 40_000}),
        "declared too large": bearer(keys.live_key, **{"Content-Length": "2000000"}),
        "bad idempotency key": bearer(keys.live_key, **{"Idempotency-Key": "\t"}),
    }[headers]
    # The path with a trailing slash is Litestar's to normalise and route, to the `send_sms` route.
    direct = await client.post(SEND, content=body, headers=sent)
    routed = await client.post(SEND + "/", content=body, headers=sent)
    assert direct.status_code == status, direct.text
    assert comparable(direct) == comparable(routed)


async def test_a_host_litestar_refuses_is_refused_as_before(client: AsyncTestClient[Any], keys: ProjectKeys) -> None:
    response = await client.post(SEND, content=VALID, headers=bearer(keys.live_key, Host="api.rsms.no/x"))
    assert response.status_code == 400
    assert response.json()["error"] == {"code": "VALIDATION_ERROR", "message": "Invalid host header"}


async def test_an_unexpected_error_is_the_contracts_500_logged_counted_and_the_slot_given_back(
    ingest_settings: Any, keys: ProjectKeys, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def fail(self: JobPublisher, job: AcceptedJob) -> None:
        raise RuntimeError("a fault of ours")

    released: list[object] = []
    release = SendService.release

    async def count_release(self: SendService, admission: Any) -> None:
        released.append(admission)
        await release(self, admission)

    monkeypatch.setattr(JobPublisher, "publish", fail)
    monkeypatch.setattr(SendService, "release", count_release)
    app = create_app(ingest_settings)
    async with AsyncTestClient(app=app) as client:
        with capture_logs() as logs:
            response = await client.post(SEND, content=VALID, headers=bearer(keys.live_key))
    assert response.status_code == 500
    assert response.json() == {
        "success": False,
        "error": {"code": "INTERNAL_ERROR", "message": "Unexpected server error"},
    }
    # The admission's headers: the request was counted before the fault.
    assert response.headers["X-RateLimit-Limit"] == "100" and response.headers["X-RateLimit-Remaining"] == "99"
    assert "Retry-After" not in response.headers
    assert [(entry["event"], entry["error_type"]) for entry in logs if entry["log_level"] == "error"] == [
        ("unexpected_error", "RuntimeError")
    ]
    assert len(released) == 1
    registry = app.state.outcomes.metrics.registry
    assert registry.get_sample_value("rsms_ingest_requests_total", {"endpoint": SEND, "code": "INTERNAL_ERROR"}) == 1
    assert registry.get_sample_value("rsms_ingest_request_seconds_count", {"endpoint": SEND}) == 1
