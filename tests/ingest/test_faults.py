"""Redis and RabbitMQ taken away from a running ingest service, then given back.

A TCP proxy stands between the app and the real service, so cutting it is the service
going down for this app alone.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import redis.asyncio as aioredis
from litestar.testing import AsyncTestClient

from services.ingest.app import create_app
from shared.topology import DISPATCH_QUEUE
from tests.support.accounts import add_project
from tests.support.queues import depth

SEND = "/api/v1/sms/send"
PAYLOAD = {"tag": "billing", "recipients": ["+4712345678"], "message": "hi"}


async def send_until_ok(client: AsyncTestClient[Any], key: str, seconds: float = 30) -> Any:
    deadline = asyncio.get_running_loop().time() + seconds
    while True:
        response = await client.post(SEND, json=PAYLOAD, headers={"Authorization": f"Bearer {key}"})
        if response.status_code == 200 or asyncio.get_running_loop().time() > deadline:
            return response
        await asyncio.sleep(0.5)


async def test_redis_down_fails_closed_with_the_contract_error(
    ingest_settings: Any, accounts_file: Path, redis_url: str, amqp_url: str, tcp_proxy: Any
) -> None:
    keys = add_project(accounts_file)
    target = urlsplit(redis_url)
    proxy = await tcp_proxy(target.hostname, target.port or 6379)
    settings = ingest_settings.model_copy(update={"redis_url": proxy.url_for(redis_url)})
    async with AsyncTestClient(app=create_app(settings)) as client:
        headers = {"Authorization": f"Bearer {keys.live_key}"}
        assert (await client.post(SEND, json=PAYLOAD, headers=headers)).status_code == 200
        await proxy.cut()
        response = await client.post(SEND, json=PAYLOAD, headers=headers)
        assert response.status_code == 500
        error = response.json()["error"]
        assert error["code"] == "INTERNAL_ERROR"
        assert "Redis" in error["message"] and "nothing was queued" in error["message"]
        for header in ("X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset", "Retry-After"):
            assert header in response.headers
        assert await depth(amqp_url, DISPATCH_QUEUE.name) == 1
        await proxy.restore()
        assert (await send_until_ok(client, keys.live_key)).status_code == 200
    assert await depth(amqp_url, DISPATCH_QUEUE.name) == 2


async def test_broker_down_answers_the_contract_error_and_releases_the_slot(
    ingest_settings: Any, accounts_file: Path, redis_url: str, amqp_url: str, tcp_proxy: Any
) -> None:
    keys = add_project(accounts_file)
    target = urlsplit(amqp_url)
    proxy = await tcp_proxy(target.hostname, target.port or 5672)
    settings = ingest_settings.model_copy(update={"amqp_url": proxy.url_for(amqp_url), "publish_timeout_seconds": 1.0})
    async with AsyncTestClient(app=create_app(settings)) as client:
        headers = {"Authorization": f"Bearer {keys.live_key}"}
        assert (await client.post(SEND, json=PAYLOAD, headers=headers)).status_code == 200
        await proxy.cut()
        for _ in range(3):
            response = await client.post(SEND, json=PAYLOAD, headers=headers)
            assert response.status_code == 500, response.text
            error = response.json()["error"]
            assert error["code"] == "INTERNAL_ERROR"
            assert "broker" in error["message"] and "nothing was queued" in error["message"]
        redis = aioredis.Redis.from_url(redis_url)
        assert await redis.zcard(f"rsms:rl:conc:{keys.live_key_id}") == 0
        await redis.aclose()
        await proxy.restore()
        assert (await send_until_ok(client, keys.live_key)).status_code == 200
    assert await depth(amqp_url, DISPATCH_QUEUE.name) == 2


async def test_ingest_starts_while_the_broker_is_down_and_recovers(
    ingest_settings: Any, accounts_file: Path, amqp_url: str, tcp_proxy: Any
) -> None:
    keys = add_project(accounts_file)
    target = urlsplit(amqp_url)
    proxy = await tcp_proxy(target.hostname, target.port or 5672)
    await proxy.cut()
    settings = ingest_settings.model_copy(update={"amqp_url": proxy.url_for(amqp_url), "publish_timeout_seconds": 1.0})
    async with AsyncTestClient(app=create_app(settings)) as client:
        response = await client.post(SEND, json=PAYLOAD, headers={"Authorization": f"Bearer {keys.live_key}"})
        assert response.status_code == 500
        assert response.json()["error"]["code"] == "INTERNAL_ERROR"
        assert (await client.get("/health/ready")).status_code == 503
        await proxy.restore()
        assert (await send_until_ok(client, keys.live_key)).status_code == 200
        assert (await client.get("/health/ready")).status_code == 200
    assert await depth(amqp_url, DISPATCH_QUEUE.name) == 1
