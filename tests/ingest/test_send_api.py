"""POST /api/v1/sms/send against the real Redis and RabbitMQ: one test per contract answer."""

from __future__ import annotations

import asyncio
import re
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
from litestar.testing import AsyncTestClient

from services.ingest.app import create_app
from shared.accounts import ProjectLimits
from shared.blocklist import BLOCKLIST_KEY, Blocklist
from shared.provider_state import PROVIDER_STATE_KEY
from shared.topology import DISPATCH_QUEUE, LEDGER_ACCEPTED_QUEUE
from tests.support.accounts import ProjectKeys, add_project
from tests.support.queues import depth, drain

SEND = "/api/v1/sms/send"
INVOICE = (
    "Dear customer, this is a reminder that your invoice #12345 for the amount of 500 NOK is due on "
    "January 15, 2026. Please make payment before the due date to avoid late fees. You can pay via our "
    "website, mobile app, or bank transfer. For questions, contact support@example.com. Thank you!"
)


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def assert_error(response: Any, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["success"] is False
    assert body["error"]["code"] == code
    assert body["error"]["message"]
    for header in ("X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset"):
        assert header in response.headers
    return dict(body["error"])


async def test_contract_example_1_single_recipient_is_queued_with_every_field(
    client: AsyncTestClient[Any], keys: ProjectKeys, amqp_url: str
) -> None:
    message = "Hello! This is a test message from our system."
    response = await client.post(
        SEND,
        json={"tag": "RS-COV1RSMS", "recipients": ["+4712345678"], "message": message},
        headers=bearer(keys.live_key),
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["success"] is True
    data = body["data"]
    assert data["recipientCount"] == 1
    assert data["smsSegmentsPerRecipient"] == 1
    assert data["totalSmsSegments"] == 1
    assert data["estimatedCost"] == "0.67 NOK"
    assert data["status"] == "queued"
    assert uuid.UUID(data["messageId"]).version == 4
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", data["timestamp"])
    assert response.headers["X-RateLimit-Limit"] == "100"
    assert response.headers["X-RateLimit-Remaining"] == "99"

    [job] = await drain(amqp_url, DISPATCH_QUEUE.name, expect=1)
    [audit] = await drain(amqp_url, LEDGER_ACCEPTED_QUEUE.name, expect=1)
    assert audit["body"] == job["body"]
    assert job["properties"]["delivery_mode"] == 2  # persistent
    assert job["properties"]["message_id"] == data["messageId"]
    sent = job["body"]
    assert sent["schema_version"] == 1
    assert sent["message_id"] == data["messageId"]
    assert sent["project"] == keys.project
    assert sent["key_id"] == keys.live_key_id
    assert sent["tag"] == "RS-COV1RSMS"
    assert sent["sender"] == "RSMS"
    assert sent["recipients"] == ["+4712345678"]
    assert sent["message"] == message
    assert sent["encoding"] == "GSM-7"
    assert sent["segments"] == 1
    assert sent["estimated_cost"] == "0.67"
    assert sent["currency"] == "NOK"
    assert sent["default_price"] == "0.67" and sent["prices"] == {}
    assert sent["test"] is False
    assert sent["store_body"] is True
    assert sent["attempt"] == 1
    accepted_at = datetime.fromisoformat(sent["accepted_at"])
    assert abs(datetime.now(UTC) - accepted_at) < timedelta(minutes=1)


async def test_contract_example_2_multiple_recipients(client: AsyncTestClient[Any], keys: ProjectKeys) -> None:
    response = await client.post(
        SEND,
        json={
            "tag": "RS-COV1RSMS",
            "recipients": ["+4712345678", "+4787654321", "+46701234567"],
            "message": "Important notification: Your account has been updated.",
        },
        headers=bearer(keys.live_key),
    )
    assert response.status_code == 200, response.text
    data = response.json()["data"]
    assert (data["recipientCount"], data["smsSegmentsPerRecipient"], data["totalSmsSegments"]) == (3, 1, 3)
    assert data["estimatedCost"] == "2.01 NOK"


async def test_contract_example_3_long_message(client: AsyncTestClient[Any], keys: ProjectKeys, amqp_url: str) -> None:
    response = await client.post(
        SEND,
        json={"tag": "billing", "recipients": ["+4712345678"], "message": INVOICE},
        headers=bearer(keys.live_key),
    )
    assert response.status_code == 200, response.text
    data = response.json()["data"]
    assert (data["recipientCount"], data["smsSegmentsPerRecipient"], data["totalSmsSegments"]) == (1, 2, 2)
    assert data["estimatedCost"] == "1.34 NOK"
    [job] = await drain(amqp_url, DISPATCH_QUEUE.name, expect=1)
    assert job["body"]["sender"] == "Billing"


async def test_duplicates_are_removed_and_emoji_switches_to_ucs2(
    client: AsyncTestClient[Any], keys: ProjectKeys, amqp_url: str
) -> None:
    text = "x" * 99 + "🎉"
    response = await client.post(
        SEND,
        json={"tag": "billing", "recipients": ["+4712345678", "+4712345678", "+4787654321"], "message": text},
        headers=bearer(keys.test_key),
    )
    assert response.status_code == 200, response.text
    data = response.json()["data"]
    assert (data["recipientCount"], data["smsSegmentsPerRecipient"], data["totalSmsSegments"]) == (2, 2, 4)
    [job] = await drain(amqp_url, DISPATCH_QUEUE.name, expect=1)
    assert job["body"]["recipients"] == ["+4712345678", "+4787654321"]
    assert job["body"]["encoding"] == "UCS-2"
    assert job["body"]["test"] is True


async def test_missing_or_wrong_key_is_unauthorized(client: AsyncTestClient[Any], amqp_url: str) -> None:
    payload = {"tag": "billing", "recipients": ["+4712345678"], "message": "hi"}
    for headers in ({}, bearer("sk_live_" + "x" * 40), {"Authorization": "Basic abc"}, bearer("")):
        error = assert_error(await client.post(SEND, json=payload, headers=headers), 401, "UNAUTHORIZED")
        assert error["message"] == "Invalid or missing API key"
    assert await depth(amqp_url, DISPATCH_QUEUE.name) == 0


async def test_suspended_project_is_forbidden(
    client: AsyncTestClient[Any], keys: ProjectKeys, accounts_file: Path, amqp_url: str
) -> None:
    from shared import accounts as store

    with store.editing(accounts_file) as data:
        store.set_suspended(data, keys.project, suspended=True)
    await asyncio.sleep(0.5)
    payload = {"tag": "billing", "recipients": ["+4712345678"], "message": "hi"}
    error = assert_error(await client.post(SEND, json=payload, headers=bearer(keys.live_key)), 403, "FORBIDDEN")
    assert "suspended" in error["message"]
    assert await depth(amqp_url, DISPATCH_QUEUE.name) == 0
    with store.editing(accounts_file) as data:
        store.set_suspended(data, keys.project, suspended=False)
    await asyncio.sleep(0.5)
    assert (await client.post(SEND, json=payload, headers=bearer(keys.live_key))).status_code == 200


async def test_ip_outside_allowlist_is_refused(ingest_settings: Any, accounts_file: Path, amqp_url: str) -> None:
    other = add_project(accounts_file, "walled", allowlist=["203.0.113.0/24"])
    async with AsyncTestClient(app=create_app(ingest_settings)) as test_client:
        response = await test_client.post(
            SEND,
            json={"tag": "billing", "recipients": ["+4712345678"], "message": "hi"},
            headers=bearer(other.live_key),
        )
    assert_error(response, 403, "IP_NOT_WHITELISTED")
    assert await depth(amqp_url, DISPATCH_QUEUE.name) == 0


async def test_forged_forwarded_for_does_not_pass_the_allowlist(
    client: AsyncTestClient[Any], accounts_file: Path
) -> None:
    other = add_project(accounts_file, "walled", allowlist=["203.0.113.0/24"])
    await asyncio.sleep(0.5)
    forged = {**bearer(other.live_key), "X-Forwarded-For": "203.0.113.7"}
    payload = {"tag": "billing", "recipients": ["+4712345678"], "message": "hi"}
    assert_error(await client.post(SEND, json=payload, headers=forged), 403, "IP_NOT_WHITELISTED")


async def test_invalid_payload_lists_every_problem(
    client: AsyncTestClient[Any], keys: ProjectKeys, amqp_url: str
) -> None:
    response = await client.post(
        SEND,
        json={"tag": "", "recipients": ["+47abc", "12345678", 4712345678], "message": "x" * 1001, "sender": "X"},
        headers=bearer(keys.live_key),
    )
    error = assert_error(response, 400, "VALIDATION_ERROR")
    assert error["message"] == "Invalid request payload"
    assert error["details"] == [
        "sender: Unknown field",
        "tag: Tag must not be empty",
        "recipients[0]: Invalid phone number format '+47abc'",
        "recipients[1]: Invalid phone number format '12345678'",
        "recipients[2]: Must be a string, not a number",
        "message: Message exceeds maximum length of 1000 characters",
    ]
    assert await depth(amqp_url, DISPATCH_QUEUE.name) == 0


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        (b"{not json", "body: Malformed JSON"),
        (b"[1, 2]", "body: Request body must be a JSON object"),
        (b'"text"', "body: Request body must be a JSON object"),
        (b"{}", "tag: Field is required"),
        (b'{"tag": 5, "recipients": "+4712345678", "message": null}', "tag: Must be a string, not a number"),
        (b'{"tag": "billing", "recipients": [], "message": "hi"}', "recipients: At least 1 recipient is required"),
        (
            b'{"tag": "billing", "recipients": ["+4712345678"], "message": ""}',
            "message: Message must be at least 1 character",
        ),
    ],
)
async def test_malformed_bodies_are_validation_errors_never_500(
    client: AsyncTestClient[Any], keys: ProjectKeys, body: bytes, detail: str
) -> None:
    response = await client.post(
        SEND, content=body, headers={**bearer(keys.live_key), "Content-Type": "application/json"}
    )
    error = assert_error(response, 400, "VALIDATION_ERROR")
    assert any(d.startswith(detail) for d in error["details"]), error["details"]


async def test_more_than_1000_recipients_is_refused(client: AsyncTestClient[Any], keys: ProjectKeys) -> None:
    recipients = [f"+4790{i:06d}" for i in range(1001)]
    response = await client.post(
        SEND, json={"tag": "billing", "recipients": recipients, "message": "hi"}, headers=bearer(keys.live_key)
    )
    error = assert_error(response, 400, "VALIDATION_ERROR")
    assert error["details"] == ["recipients: Too many recipients (1001); the maximum is 1000"]


async def test_body_over_1mb_is_413_in_the_contract_shape(client: AsyncTestClient[Any], keys: ProjectKeys) -> None:
    big = b'{"tag": "billing", "recipients": ["+4712345678"], "message": "' + b"x" * 1_100_000 + b'"}'
    response = await client.post(
        SEND, content=big, headers={**bearer(keys.live_key), "Content-Type": "application/json"}
    )
    error = assert_error(response, 413, "VALIDATION_ERROR")
    assert "1 MB" in error["message"]


async def test_unknown_and_inactive_tags_are_invalid(
    client: AsyncTestClient[Any], keys: ProjectKeys, accounts_file: Path
) -> None:
    from shared import accounts as store

    payload = {"tag": "nope", "recipients": ["+4712345678"], "message": "hi"}
    error = assert_error(await client.post(SEND, json=payload, headers=bearer(keys.live_key)), 400, "INVALID_TAG")
    assert "nope" in error["message"]
    with store.editing(accounts_file) as data:
        store.set_tag_active(data, keys.project, "billing", active=False)
    await asyncio.sleep(0.5)  # the accounts file is re-read every 0.1 s in tests
    payload["tag"] = "billing"
    assert_error(await client.post(SEND, json=payload, headers=bearer(keys.live_key)), 400, "INVALID_TAG")


async def test_blocked_recipient_is_refused_and_named(
    client: AsyncTestClient[Any], keys: ProjectKeys, redis_url: str, amqp_url: str
) -> None:
    redis = aioredis.Redis.from_url(redis_url)
    await redis.sadd(BLOCKLIST_KEY, "+4787654321")
    await redis.aclose()
    response = await client.post(
        SEND,
        json={"tag": "billing", "recipients": ["+4712345678", "+4787654321"], "message": "hi"},
        headers=bearer(keys.live_key),
    )
    error = assert_error(response, 400, "RECIPIENT_BLOCKED")
    assert error["details"] == ["recipients: +4787654321 is blocked"]
    assert await depth(amqp_url, DISPATCH_QUEUE.name) == 0


@pytest.mark.parametrize(
    ("state", "code"), [("no_credits", "PROVIDER_NO_CREDITS"), ("auth_error", "PROVIDER_AUTH_ERROR")]
)
async def test_provider_outage_refuses_live_sends_but_not_test_sends(
    client: AsyncTestClient[Any], keys: ProjectKeys, redis_url: str, state: str, code: str
) -> None:
    redis = aioredis.Redis.from_url(redis_url)
    await redis.set(PROVIDER_STATE_KEY, state)
    await redis.aclose()
    payload = {"tag": "billing", "recipients": ["+4712345678"], "message": "hi"}
    assert_error(await client.post(SEND, json=payload, headers=bearer(keys.live_key)), 500, code)
    assert (await client.post(SEND, json=payload, headers=bearer(keys.test_key))).status_code == 200


async def test_the_101st_request_in_a_minute_is_rate_limited_across_two_app_instances(
    ingest_settings: Any, keys: ProjectKeys, amqp_url: str
) -> None:
    payload = {"tag": "billing", "recipients": ["+4712345678"], "message": "hi"}
    # A per-tag limit above the key limit, so the key limit is the one that binds.
    from shared import accounts as store

    with store.editing(ingest_settings.accounts_file) as data:
        store.set_limits(data, keys.project, ProjectLimits(tag_requests_per_minute=1000))
    async with (
        AsyncTestClient(app=create_app(ingest_settings)) as first,
        AsyncTestClient(app=create_app(ingest_settings)) as second,
    ):
        for i in range(100):
            response = await (first if i % 2 else second).post(SEND, json=payload, headers=bearer(keys.live_key))
            assert response.status_code == 200, response.text
            assert response.headers["X-RateLimit-Remaining"] == str(99 - i)
        response = await first.post(SEND, json=payload, headers=bearer(keys.live_key))
    error = assert_error(response, 429, "RATE_LIMIT_EXCEEDED")
    assert response.headers["X-RateLimit-Remaining"] == "0"
    assert 1 <= error["retryAfter"] <= 60
    assert response.headers["Retry-After"] == str(error["retryAfter"])
    assert error["message"] == f"Rate limit exceeded. Try again in {error['retryAfter']} seconds"
    assert await depth(amqp_url, DISPATCH_QUEUE.name) == 100


async def test_tag_limit_applies_per_tag(client: AsyncTestClient[Any], keys: ProjectKeys) -> None:
    payload = {"tag": "billing", "recipients": ["+4712345678"], "message": "hi"}
    for _ in range(50):
        assert (await client.post(SEND, json=payload, headers=bearer(keys.live_key))).status_code == 200
    response = await client.post(SEND, json=payload, headers=bearer(keys.live_key))
    assert_error(response, 429, "RATE_LIMIT_EXCEEDED")
    assert response.headers["X-RateLimit-Limit"] == "50"
    payload["tag"] = "R-COV1RSMS"
    assert (await client.post(SEND, json=payload, headers=bearer(keys.live_key))).status_code == 200


async def test_concurrency_limit_and_slots_are_released(
    ingest_settings: Any, accounts_file: Path, redis_url: str
) -> None:
    keys = add_project(accounts_file, limits=ProjectLimits(concurrent_requests=3))
    payload = {"tag": "billing", "recipients": ["+4712345678"], "message": "hi"}
    async with AsyncTestClient(app=create_app(ingest_settings)) as test_client:
        statuses = await asyncio.gather(
            *(test_client.post(SEND, json=payload, headers=bearer(keys.live_key)) for _ in range(12))
        )
        codes = [r.status_code for r in statuses]
        assert set(codes) <= {200, 429} and codes.count(200) >= 3
        redis = aioredis.Redis.from_url(redis_url)
        assert await redis.zcard(f"rsms:rl:{{{keys.project}}}:conc:{keys.live_key_id}") == 0
        await redis.aclose()
        # Every slot came back: sequential requests all pass.
        for _ in range(5):
            assert (await test_client.post(SEND, json=payload, headers=bearer(keys.live_key))).status_code == 200


async def test_idempotency_key_returns_the_first_response_and_queues_once(
    client: AsyncTestClient[Any], keys: ProjectKeys, amqp_url: str
) -> None:
    payload = {"tag": "billing", "recipients": ["+4712345678"], "message": "hi"}
    headers = {**bearer(keys.live_key), "Idempotency-Key": "order-7781"}
    first, second = await asyncio.gather(
        client.post(SEND, json=payload, headers=headers), client.post(SEND, json=payload, headers=headers)
    )
    third = await client.post(
        SEND,
        content=b'{"message": "hi", "recipients": ["+4712345678"], "tag": "billing"}',
        headers={**headers, "Content-Type": "application/json"},
    )
    assert first.status_code == second.status_code == third.status_code == 200
    ids = {r.json()["data"]["messageId"] for r in (first, second, third)}
    assert len(ids) == 1
    assert await depth(amqp_url, DISPATCH_QUEUE.name) == 1

    payload["message"] = "something else"
    error = assert_error(await client.post(SEND, json=payload, headers=headers), 400, "VALIDATION_ERROR")
    assert "Idempotency-Key" in error["details"][0]
    assert await depth(amqp_url, DISPATCH_QUEUE.name) == 1


async def test_key_rotation_takes_effect_without_restart(
    client: AsyncTestClient[Any], keys: ProjectKeys, accounts_file: Path
) -> None:
    from shared import accounts as store

    payload = {"tag": "billing", "recipients": ["+4712345678"], "message": "hi"}
    with store.editing(accounts_file) as data:
        _, new_key = store.issue_key(data, keys.project, "live")
    await asyncio.sleep(0.5)
    assert_error(await client.post(SEND, json=payload, headers=bearer(keys.live_key)), 401, "UNAUTHORIZED")
    assert (await client.post(SEND, json=payload, headers=bearer(new_key))).status_code == 200


async def test_unknown_route_answers_in_the_contract_shape(client: AsyncTestClient[Any]) -> None:
    response = await client.get("/api/v1/nothing-here")
    assert response.status_code == 404
    assert response.json()["success"] is False


async def test_openapi_describes_the_contract(client: AsyncTestClient[Any]) -> None:
    schema = (await client.get("/docs/openapi.json")).json()
    operation = schema["paths"]["/api/v1/sms/send"]["post"]
    assert set(operation["responses"]) >= {"200", "400", "401", "403", "413", "429", "500"}
    body = operation["requestBody"]["content"]["application/json"]["schema"]
    assert body["required"] == ["tag", "recipients", "message"]
    assert body["properties"]["recipients"]["maxItems"] == 1000
    assert schema["components"]["securitySchemes"]["BearerAuth"]["scheme"] == "bearer"
    assert schema["security"] == [{"BearerAuth": []}]
    result = schema["components"]["schemas"]["SendResult"]["properties"]
    assert set(result) == {
        "messageId",
        "recipientCount",
        "smsSegmentsPerRecipient",
        "totalSmsSegments",
        "estimatedCost",
        "status",
        "timestamp",
    }


@pytest.mark.parametrize(
    "body",
    [
        b'{"tag": "\xff\xfe", "recipients": ["+4712345678"], "message": "hi"}',  # not UTF-8
        b"[" * 100_000 + b"]" * 100_000,  # nested deeper than any parser recurses
        b'{"tag": "billing"',  # cut short
    ],
    ids=["invalid-utf8", "deep-nesting", "truncated"],
)
async def test_bad_bodies_count_against_the_rate_limit(
    ingest_settings: Any, accounts_file: Path, amqp_url: str, body: bytes
) -> None:
    keys = add_project(accounts_file, limits=ProjectLimits(requests_per_minute=5))
    headers = {**bearer(keys.live_key), "Content-Type": "application/json"}
    async with AsyncTestClient(app=create_app(ingest_settings)) as test_client:
        for remaining in range(4, -1, -1):
            response = await test_client.post(SEND, content=body, headers=headers)
            assert response.status_code != 200
            assert response.headers["X-RateLimit-Remaining"] == str(remaining)
        assert_error(await test_client.post(SEND, content=body, headers=headers), 429, "RATE_LIMIT_EXCEEDED")
        payload = {"tag": "billing", "recipients": ["+4712345678"], "message": "hi"}
        assert_error(await test_client.post(SEND, json=payload, headers=headers), 429, "RATE_LIMIT_EXCEEDED")
    assert await depth(amqp_url, DISPATCH_QUEUE.name) == 0


async def test_a_live_key_never_gets_a_test_keys_idempotent_response(
    client: AsyncTestClient[Any], keys: ProjectKeys, amqp_url: str
) -> None:
    payload = {"tag": "billing", "recipients": ["+4712345678"], "message": "hi"}
    test_send = await client.post(SEND, json=payload, headers={**bearer(keys.test_key), "Idempotency-Key": "k-1"})
    live_send = await client.post(SEND, json=payload, headers={**bearer(keys.live_key), "Idempotency-Key": "k-1"})
    live_retry = await client.post(SEND, json=payload, headers={**bearer(keys.live_key), "Idempotency-Key": "k-1"})
    assert test_send.status_code == live_send.status_code == live_retry.status_code == 200
    assert test_send.json()["data"]["messageId"] != live_send.json()["data"]["messageId"]
    assert live_retry.json()["data"]["messageId"] == live_send.json()["data"]["messageId"]
    jobs = await drain(amqp_url, DISPATCH_QUEUE.name, expect=2)
    assert sorted(job["body"]["test"] for job in jobs) == [False, True]


async def test_a_blocked_number_is_refused_alike_for_every_project_without_naming_its_source(
    ingest_settings: Any, accounts_file: Path, redis_url: str, amqp_url: str
) -> None:
    first = add_project(accounts_file, "first")
    second = add_project(accounts_file, "second")
    redis = aioredis.Redis.from_url(redis_url)
    # As the dispatcher records a provider's report after the first project's send.
    await Blocklist(redis).add(["+4787654321"])
    await redis.aclose()
    payload = {"tag": "billing", "recipients": ["+4712345678", "+4787654321"], "message": "hi"}
    async with AsyncTestClient(app=create_app(ingest_settings)) as test_client:
        answers = [await test_client.post(SEND, json=payload, headers=bearer(k.live_key)) for k in (first, second)]
    errors = [assert_error(answer, 400, "RECIPIENT_BLOCKED") for answer in answers]
    assert errors[0] == errors[1]
    assert errors[0]["details"] == ["recipients: +4787654321 is blocked"]
    assert "provider" not in errors[0]["message"].lower()
    assert await depth(amqp_url, DISPATCH_QUEUE.name) == 0
