"""Toll-fraud guards through the real ingest, Redis and RabbitMQ: the destination number
policy, the country allow-list, per-country prices, the segment and daily spend caps."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
from litestar.testing import AsyncTestClient

from services.ingest.app import create_app
from shared import accounts as store
from shared.topology import DISPATCH_QUEUE, LEDGER_ACCEPTED_QUEUE
from tests.support.accounts import ProjectKeys, add_project
from tests.support.queues import depth, drain

SEND = "/api/v1/sms/send"
CONTRACT_EXAMPLES = ["+4712345678", "+4787654321", "+46701234567", "+4407123456789", "+12025551234"]


@pytest.fixture
def keys(accounts_file: Path) -> ProjectKeys:
    return add_project(accounts_file)


@pytest.fixture
async def client(ingest_settings: Any, keys: ProjectKeys) -> AsyncIterator[AsyncTestClient[Any]]:
    settings = ingest_settings.model_copy(
        update={"prices_per_segment": {"NO": Decimal("0.50"), "US": Decimal("0.10"), "CA": Decimal("0.20")}}
    )
    async with AsyncTestClient(app=create_app(settings)) as test_client:
        yield test_client


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def send(client: AsyncTestClient[Any], keys: ProjectKeys, recipients: list[str], message: str = "hi") -> Any:
    payload = {"tag": "billing", "recipients": recipients, "message": message}
    return await client.post(SEND, json=payload, headers=bearer(keys.live_key))


async def nothing_published(amqp_url: str) -> bool:
    return await depth(amqp_url, DISPATCH_QUEUE.name) == 0 and await depth(amqp_url, LEDGER_ACCEPTED_QUEUE.name) == 0


async def edit(accounts_file: Path, change: Any) -> None:
    with store.editing(accounts_file) as data:
        change(data)
    await asyncio.sleep(0.5)  # ingest re-reads the file every 0.1 s here


async def test_refused_numbers_are_a_validation_error_naming_each_and_nothing_is_queued(
    client: AsyncTestClient[Any], keys: ProjectKeys, amqp_url: str
) -> None:
    response = await send(
        client, keys, ["+4712345678", "+12", "+999999999999999", "+8816123456789", "+882123456789", "+19005550123"]
    )
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["code"] == "VALIDATION_ERROR"
    assert error["details"] == [
        "recipients[1]: '+12': impossible length for US",
        "recipients[2]: '+999999999999999': unassigned country code",
        "recipients[3]: '+8816123456789': international network number (+881) not allowed for this project",
        "recipients[4]: '+882123456789': international network number (+882) not allowed for this project",
        "recipients[5]: '+19005550123': premium-rate number not allowed for this project",
    ]
    assert response.headers["X-RateLimit-Remaining"] == "99"  # counted like any request
    assert await nothing_published(amqp_url)


async def test_the_contracts_examples_are_queued(
    client: AsyncTestClient[Any], keys: ProjectKeys, amqp_url: str
) -> None:
    response = await send(client, keys, CONTRACT_EXAMPLES)
    assert response.status_code == 200, response.text
    [job] = await drain(amqp_url, DISPATCH_QUEUE.name, expect=1)
    assert job["body"]["recipients"] == CONTRACT_EXAMPLES


async def test_a_project_allows_a_type_and_limits_its_countries(
    client: AsyncTestClient[Any], keys: ProjectKeys, accounts_file: Path, amqp_url: str
) -> None:
    await edit(accounts_file, lambda data: store.set_number_types(data, keys.project, ["international_network"]))
    assert (await send(client, keys, ["+8816123456789"])).status_code == 200
    await drain(amqp_url, DISPATCH_QUEUE.name, expect=1)

    await edit(accounts_file, lambda data: store.set_countries(data, keys.project, ["NO", "US"]))
    response = await send(client, keys, ["+4712345678", "+14165550123", "+12025551234"])
    assert response.status_code == 400, response.text
    assert response.json()["error"]["details"] == [
        "recipients[1]: '+14165550123': destination country CA not allowed for this project"
    ]
    assert await depth(amqp_url, DISPATCH_QUEUE.name) == 0
    assert (await send(client, keys, ["+4712345678", "+12025551234"])).status_code == 200


async def test_canada_is_priced_as_canada(client: AsyncTestClient[Any], keys: ProjectKeys, amqp_url: str) -> None:
    response = await send(client, keys, ["+14165550123", "+16045550123", "+15145550123", "+12025551234"])
    assert response.status_code == 200, response.text
    assert response.json()["data"]["estimatedCost"] == "0.70 NOK"  # 3 × 0.20 (CA) + 0.10 (US)


async def test_a_message_over_the_segment_cap_is_a_validation_error_saying_so(
    client: AsyncTestClient[Any], keys: ProjectKeys, accounts_file: Path, amqp_url: str
) -> None:
    await edit(
        accounts_file, lambda data: store.set_limits(data, keys.project, store.ProjectLimits(segments_per_message=2))
    )
    response = await send(client, keys, ["+4712345678"], "😀" * 200)  # UCS-2: 400 units, 7 segments
    assert response.status_code == 400, response.text
    assert response.json()["error"]["details"] == [
        "message: 7 SMS segments (UCS-2) exceed this project's cap of 2 segments per message"
    ]
    assert await nothing_published(amqp_url)
    assert (await send(client, keys, ["+4712345678"], "x" * 300)).status_code == 200  # 2 segments


async def test_the_daily_spend_cap_forbids_what_would_exceed_it_and_counts_only_what_was_queued(
    client: AsyncTestClient[Any], keys: ProjectKeys, accounts_file: Path, amqp_url: str, redis_url: str
) -> None:
    await edit(
        accounts_file,
        lambda data: store.set_limits(data, keys.project, store.ProjectLimits(daily_spend_cap=Decimal("1.20"))),
    )
    assert (await send(client, keys, ["+4712345678", "+4787654321"])).status_code == 200  # 2 × 0.50
    response = await send(client, keys, ["+4712345678"])  # another 0.50: 1.50 > 1.20
    assert response.status_code == 403, response.text
    error = response.json()["error"]
    assert error["code"] == "FORBIDDEN" and "Daily spend cap" in error["message"] and "1.20 NOK" in error["message"]
    assert await depth(amqp_url, DISPATCH_QUEUE.name) == 1  # only the first request's job

    redis = aioredis.Redis.from_url(redis_url)
    try:
        [spend_key] = [key async for key in redis.scan_iter(f"*{{{keys.project}}}:spend:*")]
        assert int(await redis.get(spend_key)) == 1_000_000  # 1.00 in millionths: the refusal reserved nothing
    finally:
        await redis.aclose()
    test_send = await client.post(
        SEND,
        json={"tag": "billing", "recipients": ["+4712345678"], "message": "hi"},
        headers=bearer(keys.test_key),
    )
    assert test_send.status_code == 200  # test sends are never billed, so never capped


async def test_a_job_carries_the_prices_of_its_recipients_countries_only(
    client: AsyncTestClient[Any], keys: ProjectKeys, amqp_url: str
) -> None:
    response = await send(client, keys, ["+14165550123", "+12025551234", "+46701234567"])
    assert response.status_code == 200, response.text
    [job] = await drain(amqp_url, DISPATCH_QUEUE.name, expect=1)
    # CA and US from the table; SE has no price of its own (the default applies); NO is not a destination.
    assert job["body"]["prices"] == {"CA": "0.20", "US": "0.10"}
