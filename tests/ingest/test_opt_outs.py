"""A project's opt-out list in the send path (real Redis and RabbitMQ): its sends to an
opted-out number are refused with the same RECIPIENT_BLOCKED as a globally blocked one,
other projects' sends are not, and nothing is queued."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
from litestar.testing import AsyncTestClient

from services.ingest.app import create_app
from shared.blocklist import Blocklist
from shared.optouts import OptOuts
from shared.topology import DISPATCH_QUEUE
from tests.support.accounts import ProjectKeys, add_project
from tests.support.queues import depth

SEND = "/api/v1/sms/send"
OPTED_OUT, BLOCKED, FINE = "+4787654321", "+4787654300", "+4712345678"


@pytest.fixture
def projects(accounts_file: Path) -> tuple[ProjectKeys, ProjectKeys]:
    """Written before the app starts, so its first read of the accounts file has both."""
    return add_project(accounts_file, "acme"), add_project(accounts_file, "other")


@pytest.fixture
async def client(
    ingest_settings: Any, projects: tuple[ProjectKeys, ProjectKeys]
) -> AsyncIterator[AsyncTestClient[Any]]:
    async with AsyncTestClient(app=create_app(ingest_settings)) as test_client:
        yield test_client


async def send(client: AsyncTestClient[Any], keys: ProjectKeys, *recipients: str) -> Any:
    return await client.post(
        SEND,
        json={"tag": "billing", "recipients": list(recipients), "message": "hi"},
        headers={"Authorization": f"Bearer {keys.live_key}"},
    )


async def test_an_opted_out_number_is_blocked_for_its_project_only(
    projects: tuple[ProjectKeys, ProjectKeys], client: AsyncTestClient[Any], redis_url: str, amqp_url: str
) -> None:
    acme, other = projects
    redis = aioredis.Redis.from_url(redis_url)
    try:
        await OptOuts(redis).add("acme", [OPTED_OUT])
        await Blocklist(redis).add([BLOCKED])
    finally:
        await redis.aclose()

    opted_out = await send(client, acme, FINE, OPTED_OUT)
    assert opted_out.status_code == 400
    assert opted_out.json()["error"]["code"] == "RECIPIENT_BLOCKED"
    assert opted_out.json()["error"]["details"] == [f"recipients: {OPTED_OUT} is blocked"]
    assert await depth(amqp_url, DISPATCH_QUEUE.name) == 0

    # Word for word the answer a globally blocked number gets: which list it is on is not said.
    blocked = await send(client, acme, FINE, BLOCKED)
    assert opted_out.json()["error"]["message"] == blocked.json()["error"]["message"]
    assert blocked.json()["error"]["details"] == [f"recipients: {BLOCKED} is blocked"]

    both = await send(client, acme, OPTED_OUT, BLOCKED)
    assert both.json()["error"]["details"] == [f"recipients: {n} is blocked" for n in (OPTED_OUT, BLOCKED)]

    assert (await send(client, other, FINE, OPTED_OUT)).status_code == 200
    assert await depth(amqp_url, DISPATCH_QUEUE.name) == 1
