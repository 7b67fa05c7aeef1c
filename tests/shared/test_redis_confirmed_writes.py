"""Writes that must outlive a failover, on a Redis without replicas: WAIT answers 0, so a
setting that asks for a replica treats them as not stored; and scripts come back after
Redis lost its script cache (SCRIPT FLUSH, as after a restart or on a promoted replica)."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from redis.asyncio import Redis

from services.dispatcher.send_markers import CLAIMED, SendMarkers, marker_key
from services.ingest.idempotency import IdempotencyStore
from services.ingest.ratelimit import AdmissionQuery, Limits, RateLimiter, Verdict
from shared.errors import GatewayError
from shared.redis_connection import Durability, NotConfirmed, connect, write_confirmed

ONE_REPLICA = Durability(replicas=1, timeout_ms=50)


async def test_a_write_no_replica_confirms_raises_not_confirmed(redis_url: str) -> None:
    client = connect(redis_url)
    try:
        with pytest.raises(NotConfirmed):
            await write_confirmed(client, "k", [("SET", "k", "v")], ONE_REPLICA)
        assert await write_confirmed(client, "k2", [("SET", "k2", "v", "NX")], Durability()) == [True]
        assert await client.get("k2") == b"v"
    finally:
        await client.aclose()


async def test_an_unconfirmed_idempotency_claim_is_withdrawn_so_a_retry_is_not_left_waiting(redis_url: str) -> None:
    client = connect(redis_url)
    store = IdempotencyStore(client, ttl_seconds=60, wait_seconds=0.2, durability=ONE_REPLICA)
    try:
        with pytest.raises(NotConfirmed):
            await store.claim("acme", "live", "key-1", "print")
        assert await client.keys("rsms:idem:*") == []
        # With the primary's word enough, the same key is claimed normally.
        plain = IdempotencyStore(client, ttl_seconds=60, wait_seconds=0.2)
        assert isinstance(await plain.claim("acme", "live", "key-1", "print"), uuid.UUID)
        assert len(await client.keys("rsms:idem:*")) == 1
        # A request finding the key held wrote nothing: it waits for the holder as ever,
        # and leaves that claim alone.
        with pytest.raises(GatewayError, match="still being processed"):
            await store.claim("acme", "live", "key-1", "print")
        assert len(await client.keys("rsms:idem:*")) == 1
    finally:
        await client.aclose()


async def test_an_unconfirmed_marker_claim_fails_the_claim(redis_url: str) -> None:
    client = connect(redis_url, decode_responses=True)
    try:
        with pytest.raises(NotConfirmed):
            await SendMarkers(client, 60, ONE_REPLICA).claim(uuid.uuid4(), ["+4712345678"])
    finally:
        await client.aclose()


async def test_scripts_are_loaded_again_after_redis_lost_them(redis_url: str) -> None:
    client = connect(redis_url, decode_responses=True)
    markers = SendMarkers(client, 60)
    limiter = RateLimiter(connect(redis_url), slot_seconds=30)
    limits = Limits(10, 10, 5, 10)
    message = uuid.uuid4()
    try:
        assert (await markers.claim(message, ["+4712345678"])).markers == [""]
        await limiter.admit(AdmissionQuery("key_1", limits, project="acme"))
        await Redis.from_url(redis_url).script_flush()
        assert await client.script_exists("0" * 40) == [False]
        assert (await markers.claim(message, ["+4712345678"])).markers == [CLAIMED]
        assert await client.hget(marker_key(message), "+4712345678") == CLAIMED
        answers = await limiter.admit(AdmissionQuery("key_1", limits, project="acme"))
        assert answers.rate.verdict is Verdict.ADMITTED and answers.rate.remaining == 8
    finally:
        await client.aclose()


async def test_a_claim_whose_holder_died_is_taken_over_with_its_message_id(redis_url: str) -> None:
    client = connect(redis_url)
    dead = IdempotencyStore(client, ttl_seconds=60, wait_seconds=0.2, stale_after_seconds=0.5)
    retry = IdempotencyStore(client, ttl_seconds=60, wait_seconds=0.2, stale_after_seconds=0.5)
    try:
        first = await dead.claim("acme", "live", "key-1", "print")  # then the process dies
        assert isinstance(first, uuid.UUID)
        # While the holder may still be alive, a retry waits, then is told to retry.
        with pytest.raises(GatewayError, match="still being processed"):
            await retry.claim("acme", "live", "key-1", "print")
        await asyncio.sleep(0.6)
        # Then it takes the claim over, under the same message id: if the dead holder had
        # published, the job is queued twice under one id (a redelivery, sent once).
        assert await retry.claim("acme", "live", "key-1", "print") == first
        # Taken over means claimed afresh: the next retry waits for this holder again.
        with pytest.raises(GatewayError, match="still being processed"):
            await retry.claim("acme", "live", "key-1", "print")
        assert 0 < await client.ttl(next(iter(await client.keys("rsms:idem:*")))) <= 60
    finally:
        await client.aclose()


async def test_a_claim_let_go_after_a_failed_publish_is_taken_at_once_under_its_message_id(redis_url: str) -> None:
    client = connect(redis_url)
    store = IdempotencyStore(client, ttl_seconds=60, wait_seconds=0.2, stale_after_seconds=3600)
    try:
        first = await store.claim("acme", "live", "key-1", "print")
        assert isinstance(first, uuid.UUID)
        # The publish failed, perhaps after the broker had the job (its confirm lost).
        await store.let_go("acme", "live", "key-1", "print", first)
        assert await store.claim("acme", "live", "key-1", "print") == first
        # The key still belongs to its request.
        await store.let_go("acme", "live", "key-1", "print", first)
        with pytest.raises(GatewayError) as refused:
            await store.claim("acme", "live", "key-1", "another print")
        assert "different request" in str(refused.value.details)
    finally:
        await client.aclose()
