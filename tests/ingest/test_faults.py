"""Redis and RabbitMQ taken away from a running ingest service, then given back.

A TCP proxy stands between the app and the real service, so cutting it is the service
going down for this app alone.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aio_pika
import pytest
import redis.asyncio as aioredis
from litestar.testing import AsyncTestClient

from services.ingest.accepted_job import AcceptedJob
from services.ingest.app import create_app
from services.ingest.publisher import JobPublisher
from shared.topology import ACCEPTED_EXCHANGE, DISPATCH_QUEUE, LEDGER_ACCEPTED_QUEUE
from tests.ledger.support import eventually
from tests.support.accounts import add_project
from tests.support.queues import depth

SEND = "/api/v1/sms/send"
PAYLOAD = {"tag": "billing", "recipients": ["+4712345678"], "message": "hi"}


async def send_until_ok(
    client: AsyncTestClient[Any], key: str, seconds: float = 30, extra_headers: dict[str, str] | None = None
) -> Any:
    deadline = asyncio.get_running_loop().time() + seconds
    while True:
        headers = {"Authorization": f"Bearer {key}", **(extra_headers or {})}
        response = await client.post(SEND, json=PAYLOAD, headers=headers)
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
    # A long publish timeout: while the connection is known to be down, a send is refused
    # at once, not after waiting for a reconnect (its client is waiting, and holds a slot).
    settings = ingest_settings.model_copy(update={"amqp_url": proxy.url_for(amqp_url), "publish_timeout_seconds": 60.0})
    async with AsyncTestClient(app=create_app(settings)) as client:
        headers = {"Authorization": f"Bearer {keys.live_key}"}
        assert (await client.post(SEND, json=PAYLOAD, headers=headers)).status_code == 200
        await proxy.cut()

        async def broker_unready() -> bool:
            return (await client.get("/health/ready")).status_code == 503

        await eventually(broker_unready, what="ingest to see the broker gone")
        for _ in range(3):
            started = asyncio.get_running_loop().time()
            response = await client.post(SEND, json=PAYLOAD, headers=headers)
            # Not a speed figure: waiting for the reconnect would take the whole minute.
            assert asyncio.get_running_loop().time() - started < 30
            assert response.status_code == 500, response.text
            error = response.json()["error"]
            assert error["code"] == "INTERNAL_ERROR"
            assert "broker" in error["message"] and "nothing was queued" in error["message"]
        redis = aioredis.Redis.from_url(redis_url)
        assert await redis.zcard(f"rsms:rl:{{{keys.project}}}:conc:{keys.live_key_id}") == 0
        await redis.aclose()
        await proxy.restore()
        assert (await send_until_ok(client, keys.live_key)).status_code == 200
    assert await depth(amqp_url, DISPATCH_QUEUE.name) == 2


async def test_a_job_no_queue_takes_is_refused_with_the_contract_error_and_nothing_kept(
    ingest_settings: Any, accounts_file: Path, redis_url: str, amqp_url: str
) -> None:
    """The broker confirms a message it returned (mandatory, no queue bound): ingest must
    not answer `queued` for it."""
    keys = add_project(accounts_file)
    async with AsyncTestClient(app=create_app(ingest_settings)) as client:
        headers = {"Authorization": f"Bearer {keys.live_key}"}
        assert (await client.post(SEND, json=PAYLOAD, headers=headers)).status_code == 200
        connection = await aio_pika.connect(amqp_url)
        try:
            channel = await connection.channel()
            queues = [await channel.get_queue(q.name) for q in (DISPATCH_QUEUE, LEDGER_ACCEPTED_QUEUE)]
            for queue in queues:
                await queue.unbind(ACCEPTED_EXCHANGE.name)
            response = await client.post(SEND, json=PAYLOAD, headers=headers)
            assert response.status_code == 500, response.text
            error = response.json()["error"]
            assert error["code"] == "INTERNAL_ERROR" and "nothing was queued" in error["message"]
            redis = aioredis.Redis.from_url(redis_url)
            assert await redis.zcard(f"rsms:rl:{{{keys.project}}}:conc:{keys.live_key_id}") == 0
            await redis.aclose()
            for queue in queues:
                await queue.bind(ACCEPTED_EXCHANGE.name)
        finally:
            await connection.close()
        assert (await client.post(SEND, json=PAYLOAD, headers=headers)).status_code == 200
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


async def test_redis_lost_right_after_the_confirm_still_answers_queued_and_a_retry_gets_the_same_id(
    ingest_settings: Any,
    accounts_file: Path,
    redis_url: str,
    amqp_url: str,
    tcp_proxy: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    keys = add_project(accounts_file)
    target = urlsplit(redis_url)
    proxy = await tcp_proxy(target.hostname, target.port or 6379)
    settings = ingest_settings.model_copy(update={"redis_url": proxy.url_for(redis_url)})
    publish = JobPublisher.publish

    async def publish_then_lose_redis(self: JobPublisher, job: AcceptedJob) -> None:
        await publish(self, job)
        await proxy.cut()

    monkeypatch.setattr(JobPublisher, "publish", publish_then_lose_redis)
    headers = {"Authorization": f"Bearer {keys.live_key}", "Idempotency-Key": "invoice-42"}
    async with AsyncTestClient(app=create_app(settings)) as client:
        first = await client.post(SEND, json=PAYLOAD, headers=headers)
        assert first.status_code == 200, first.text
        assert first.json()["data"]["status"] == "queued"
        monkeypatch.setattr(JobPublisher, "publish", publish)
        await proxy.restore()
        retry = await send_until_ok(client, keys.live_key, extra_headers=headers)
        assert retry.status_code == 200, retry.text
        assert retry.json()["data"]["messageId"] == first.json()["data"]["messageId"]
    # Written to Redis once it answered: a retry reaching another ingest process gets it too.
    async with AsyncTestClient(app=create_app(ingest_settings)) as other_process:
        again = await other_process.post(SEND, json=PAYLOAD, headers=headers)
        assert again.json()["data"]["messageId"] == first.json()["data"]["messageId"]
    assert await depth(amqp_url, DISPATCH_QUEUE.name) == 1
