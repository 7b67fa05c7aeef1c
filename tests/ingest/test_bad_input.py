"""Bad input of every kind is a 400 `VALIDATION_ERROR` (never a 500), changes nothing, and
counts against the limits like any other request. Against the real Redis and RabbitMQ."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from litestar.testing import AsyncTestClient

from services.ingest.app import create_app
from shared.accounts import ProjectLimits
from shared.topology import DISPATCH_QUEUE
from tests.support.accounts import ProjectKeys, add_project
from tests.support.queues import depth

SEND = "/api/v1/sms/send"
VALID = b'{"tag": "billing", "recipients": ["+4712345678"], "message": "hi"}'
BAD_BODIES = [
    (b'{"tag": "billing", "recipients": ["+4712345678"], "message": "h\xffi"}', "body: Malformed JSON"),
    (b'{"tag": "\xc3\x28", "recipients": ["+4712345678"], "message": "hi"}', "body: Malformed JSON"),
    (b"\xff\xfe{}", "body: Malformed JSON"),
    (b"[" * 100_000 + b"]" * 100_000, "body: Malformed JSON (nested too deeply)"),
    (b'{"a":' * 50_000 + b"1" + b"}" * 50_000, "body: Malformed JSON (nested too deeply)"),
    (VALID[:-1] + b', "x": 1e999}', "body: Malformed JSON"),
    (VALID[:-1] + b', "tag": "R-COV1RSMS"}', "tag: Duplicate field"),
    (VALID[:-1] + b', "t\\u0061g" : "R-COV1RSMS"}', "tag: Duplicate field"),
    (VALID[:-1] + b', "recipients": ["+4787654321"]}', "recipients: Duplicate field"),
    (b'{"tag": "billing", "x": {"a": 1, "a": 2}}', "a: Duplicate field"),
]


def headers(key: str, content_type: str | None = "application/json", **more: str) -> dict[str, str]:
    sent = {"Authorization": f"Bearer {key}", **more}
    if content_type is not None:
        sent["Content-Type"] = content_type
    return sent


def validation_error(response: Any) -> list[str]:
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["code"] == "VALIDATION_ERROR"
    return list(error.get("details", []))


async def test_bad_bytes_are_validation_errors_never_500(
    client: AsyncTestClient[Any], keys: ProjectKeys, amqp_url: str
) -> None:
    for body, detail in BAD_BODIES:
        details = validation_error(await client.post(SEND, content=body, headers=headers(keys.live_key)))
        assert any(d.startswith(detail) for d in details), (body[:80], details)
    # A message with quotes and colons is not mistaken for a duplicate key.
    quoted = b'{"tag": "billing", "recipients": ["+4712345678"], "message": "say \\"tag\\": \\"x\\":"}'
    assert (await client.post(SEND, content=quoted, headers=headers(keys.live_key))).status_code == 200
    assert await depth(amqp_url, DISPATCH_QUEUE.name) == 1


async def test_malformed_bodies_count_against_the_rate_limit(
    ingest_settings: Any, accounts_file: Path, amqp_url: str
) -> None:
    limited = add_project(accounts_file, "limited", limits=ProjectLimits(requests_per_minute=5))
    bad = BAD_BODIES[0][0]  # invalid UTF-8: a 500 before the limiter was asked, once
    async with AsyncTestClient(app=create_app(ingest_settings)) as client:
        statuses = [
            (await client.post(SEND, content=bad, headers=headers(limited.live_key))).status_code for _ in range(7)
        ]
        wrong_type = await client.post(SEND, content=VALID, headers=headers(limited.live_key, "text/plain"))
    assert statuses == [400] * 5 + [429] * 2
    assert wrong_type.status_code == 429
    assert await depth(amqp_url, DISPATCH_QUEUE.name) == 0


async def test_anything_but_json_is_refused(client: AsyncTestClient[Any], keys: ProjectKeys, amqp_url: str) -> None:
    refused = [
        "text/plain",
        "application/xml",
        "application/x-www-form-urlencoded",  # what `curl -d` sends without -H
        "multipart/form-data; boundary=x",
        "application/json; charset=latin-1",
        "application/jsonp",
        None,
    ]
    for content_type in refused:
        details = validation_error(await client.post(SEND, content=VALID, headers=headers(keys.live_key, content_type)))
        assert details[0].startswith("Content-Type: must be application/json"), (content_type, details)
    assert await depth(amqp_url, DISPATCH_QUEUE.name) == 0
    for content_type in ("application/json", "Application/JSON", "application/json; charset=utf-8"):
        response = await client.post(SEND, content=VALID, headers=headers(keys.live_key, content_type))
        assert response.status_code == 200, (content_type, response.text)


async def test_wrong_method_names_the_allowed_ones(client: AsyncTestClient[Any]) -> None:
    response = await client.get(SEND)
    assert response.status_code == 405
    assert response.json()["error"]["code"] == "VALIDATION_ERROR"
    assert "POST" in [method.strip() for method in response.headers["Allow"].split(",")]


async def test_headers_over_the_limit_get_the_contract_shape(client: AsyncTestClient[Any], keys: ProjectKeys) -> None:
    response = await client.post(SEND, content=VALID, headers=headers(keys.live_key, X_Padding="x" * 40_000))
    assert response.status_code == 431
    assert response.json()["error"]["code"] == "VALIDATION_ERROR"
    assert "32 KB" in response.json()["error"]["message"]


async def test_usage_days_outside_what_the_ledger_holds_are_validation_errors(
    client: AsyncTestClient[Any], keys: ProjectKeys
) -> None:
    out_of_range = "must be a day from 1970-01-01 to 2200-12-31"
    for query, field in [
        ("from=9999-12-01&to=9999-12-31", "from"),  # was an OverflowError (no day after 9999-12-31)
        ("from=2026-01-01&to=9999-12-31", "to"),
        ("from=0001-01-01&to=0001-12-31", "from"),  # were "ClickHouse unavailable"
        ("from=0999-06-01&to=0999-06-02", "from"),
    ]:
        response = await client.get(f"/api/v1/usage?{query}", headers=headers(keys.live_key))
        assert f"{field}: {out_of_range}" in " ".join(validation_error(response)), query
