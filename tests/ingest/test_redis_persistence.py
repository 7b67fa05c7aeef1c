"""Idempotency-Keys outlive a Redis restart with the README's Redis (append-only file), and
ingest says in /health/ready whether its Redis keeps them."""

from __future__ import annotations

from litestar.testing import AsyncTestClient

from services.ingest.app import create_app
from shared.topology import DISPATCH_QUEUE
from tests.support.accounts import add_project
from tests.support.queues import depth
from tests.support.redis_server import RedisServer

SEND = "/api/v1/sms/send"


async def test_ready_says_when_redis_does_not_persist(ingest_settings):
    # The tests' Redis keeps nothing over a restart (--save "" --appendonly no).
    async with AsyncTestClient(app=create_app(ingest_settings)) as client:
        body = (await client.get("/health/ready")).json()
    assert body["status"] == "ok"
    assert body["details"]["redis_persistence"].startswith("DOES NOT PERSIST")


async def test_ready_says_when_redis_persists(ingest_settings, free_port, tmp_path):
    server = RedisServer(free_port(), tmp_path / "redis", appendonly=True).start()
    try:
        settings = ingest_settings.model_copy(update={"redis_url": server.url})
        async with AsyncTestClient(app=create_app(settings)) as client:
            body = (await client.get("/health/ready")).json()
        assert body["details"]["redis_persistence"] == "persists: AOF enabled"
    finally:
        server.stop()


async def test_retries_after_a_redis_restart_get_the_same_message_ids(
    ingest_settings, accounts_file, amqp_url, free_port, tmp_path
):
    keys = add_project(accounts_file)
    server = RedisServer(free_port(), tmp_path / "redis", appendonly=True).start()
    # 60 requests in a minute on one key and tag: above the default limits, not the point here.
    settings = ingest_settings.model_copy(
        update={"redis_url": server.url, "requests_per_minute": 1000, "tag_requests_per_minute": 1000}
    )
    auth = {"Authorization": f"Bearer {keys.live_key}"}
    requests = [
        (
            {**auth, "Idempotency-Key": f"order-{i}"},
            {"tag": "billing", "recipients": [f"+47900000{i:02d}"], "message": "hi"},
        )
        for i in range(30)
    ]
    try:
        async with AsyncTestClient(app=create_app(settings)) as client:
            first = [
                (await client.post(SEND, json=body, headers=headers)).json()["data"]["messageId"]
                for headers, body in requests
            ]
            server.restart()  # kill -9, then started again on its own data
            again = [await send_as_a_client_does(client, headers, body) for headers, body in requests]
    finally:
        server.stop()
    assert again == first  # 30 of 30 retries answered with the first messageId
    assert await depth(amqp_url, DISPATCH_QUEUE.name) == 30  # and queued once each


async def send_as_a_client_does(client, headers, body) -> str:
    """Retries what the API says to retry: the first request on a connection that died with
    the old Redis answers 500 INTERNAL_ERROR with retryAfter, and nothing was queued."""
    for _ in range(5):
        response = await client.post(SEND, json=body, headers=headers)
        if response.status_code == 200:
            return str(response.json()["data"]["messageId"])
        assert response.status_code == 500 and "retryAfter" in response.json()["error"], response.text
    raise AssertionError(f"no answer after 5 tries: {response.text}")
