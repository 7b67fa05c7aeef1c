"""Every Redis user of the gateway on a Sentinel-managed primary and on a Redis Cluster:
scripts whose keys share a slot, scripts loaded again after SCRIPT FLUSH (as on a promoted
replica, which never had them), writes confirmed by a replica (WAIT) and the persistence
check."""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from redis.asyncio.cluster import RedisCluster

from services.dispatcher.receipts import PartReport, SentPart
from services.dispatcher.receipts_store import RedisReceiptStore
from services.dispatcher.send_markers import _APPLY as MARKER_SCRIPT
from services.dispatcher.send_markers import CLAIMED, SendMarkers
from services.ingest.idempotency import IdempotencyStore, StoredResponse
from services.ingest.ratelimit import _SCRIPT as RATE_SCRIPT
from services.ingest.ratelimit import (
    AdmissionQuery,
    Limits,
    RateLimiter,
    Reservation,
    SpendQuery,
    Verdict,
    concurrency_key,
)
from shared.blocklist import Blocklist
from shared.optouts import OptOuts
from shared.provider_state import ProviderState, read_provider_state, write_provider_state
from shared.redis_connection import Durability, RedisClient, connect
from shared.redis_persistence import check_persistence
from tests.support.redis_ha import RedisClusterSet, SentinelSet

ONE_REPLICA = Durability(replicas=1, timeout_ms=2000)


@pytest.fixture(params=["sentinel", "cluster"])
def redis_ha_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    topology = (
        SentinelSet(tmp_path / "sentinel") if request.param == "sentinel" else RedisClusterSet(tmp_path / "cluster")
    )
    try:
        yield topology.url
    finally:
        topology.stop()


async def script_flush(client: RedisClient, script: str) -> None:
    """Every primary forgets its scripts, `script` among them."""
    sha = hashlib.sha1(script.encode(), usedforsecurity=False).hexdigest()
    if isinstance(client, RedisCluster):
        for node in client.get_primaries():
            await client.execute_command("SCRIPT FLUSH", target_nodes=node)
            assert await client.execute_command("SCRIPT EXISTS", sha, target_nodes=node) in ([0], [False])
    else:
        await client.script_flush()
        assert await client.script_exists(sha) == [False]


async def test_every_redis_user_works_and_scripts_come_back_after_a_flush(redis_ha_url: str) -> None:
    raw = connect(redis_ha_url)
    text = connect(redis_ha_url, decode_responses=True)
    try:
        # Admission: the script (project's slot), the blocklist and opt-out lookups and the
        # provider state in one pipeline; then the release.
        await Blocklist(raw).add(["+4711111111"])
        await OptOuts(raw).add("acme", ["+4722222222"])
        await write_provider_state(raw, ProviderState.NO_CREDITS, 60)
        limiter = RateLimiter(raw, slot_seconds=30)
        limits = Limits(10, 10, 5, 10)
        query = AdmissionQuery(
            "key_1",
            limits,
            tag="acme:billing",
            recipients=["+4711111111", "+4722222222", "+4733333333"],
            project="acme",
            spend=SpendQuery("acme", cost=Decimal("1.5"), cap=Decimal("10")),
        )
        answers = await limiter.admit(query)
        assert answers.rate.verdict is Verdict.ADMITTED
        assert answers.blocked == {"+4711111111", "+4722222222"}
        assert answers.provider_state is ProviderState.NO_CREDITS
        await limiter.release(answers.reservation)
        await script_flush(raw, RATE_SCRIPT)
        again = await limiter.admit(query)
        assert again.rate.verdict is Verdict.ADMITTED and again.rate.remaining == 8
        await limiter.release(Reservation("acme", "key_1", again.rate.slot))
        assert (await limiter.peek("acme", "key_1", limits)).remaining == 8
        # Requests of several projects (several slots) in one pipeline: the shared lookups
        # (one opt-out call per project) and the releases' one ZREM per concurrency key.
        await OptOuts(raw).add("beta", ["+4733333333"])
        many = [
            AdmissionQuery(f"key_{i % 2}", limits, recipients=query.recipients, project=project)
            for i, project in enumerate(["acme", "beta", "gamma", "acme", "beta", "gamma"])
        ]
        answers_of_many = await asyncio.gather(*(limiter.admit(q) for q in many))
        assert [sorted(a.blocked) for a in answers_of_many[:3]] == [
            ["+4711111111", "+4722222222"],
            ["+4711111111", "+4733333333"],
            ["+4711111111"],
        ]
        assert all(a.rate.admitted for a in answers_of_many)
        await asyncio.gather(*(limiter.release(a.reservation) for a in answers_of_many))
        for project in ("acme", "beta", "gamma"):
            for key_id in ("key_0", "key_1"):
                assert await raw.zcard(concurrency_key("rsms:rl", project, key_id)) == 0
        await write_provider_state(raw, ProviderState.OK, 60)
        assert await read_provider_state(raw) is ProviderState.OK

        # Send markers: many messages in one script call, confirmed by a replica.
        markers = SendMarkers(text, 60, ONE_REPLICA)
        assert await markers.begin_generation() > 0
        messages = [uuid.uuid4() for _ in range(20)]
        claims = [await markers.claim(m, ["+4733333333"]) for m in messages]
        assert all(c.markers == [""] for c in claims)
        await script_flush(text, MARKER_SCRIPT)
        assert (await markers.claim(messages[0], ["+4733333333"])).markers == [CLAIMED]
        await markers.record(messages[0], {"+4733333333": "s:ref-1"})

        # Idempotency: claimed and completed with a replica's confirmation.
        store = IdempotencyStore(raw, ttl_seconds=60, wait_seconds=0.5, durability=ONE_REPLICA)
        assert isinstance(await store.claim("acme", "live", "k-1", "print"), uuid.UUID)
        await store.complete("acme", "live", "k-1", "print", StoredResponse(200, b"{}"))
        assert await store.claim("acme", "live", "k-1", "print") == StoredResponse(200, b"{}")

        # Receipts: a MULTI on one key.
        receipts = RedisReceiptStore(text, 60)
        part = SentPart(uuid.uuid4(), "acme", "+4733333333", 1, 1, False)
        await receipts.remember({"c-1": part})
        assert await receipts.find("c-1") == part
        state = await receipts.add_report(part, PartReport("DELIVRD", None, datetime.now(UTC), "c-1"))
        assert state.reports[1].status == "DELIVRD"

        persistence = await check_persistence(raw)
        assert persistence is not None and persistence.persists
    finally:
        await raw.aclose()
        await text.aclose()
