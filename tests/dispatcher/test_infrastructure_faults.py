"""Redis and RabbitMQ taken away from a running dispatcher: nothing lost, nobody delivered twice.

The dispatcher reaches both through TCP proxies the test cuts and restores, like the
services going down and coming back, while jobs keep arriving.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from urllib.parse import urlsplit

from shared.topology import DISPATCH_QUEUE
from tests.dispatcher.harness import eventually, make_job, numbers, publish
from tests.support.queues import depth


async def test_redis_and_rabbitmq_outages_lose_nothing_and_send_nobody_twice(
    amqp_url, redis_url, simulator, start_dispatcher, tcp_proxy
):
    redis_target, amqp_target = urlsplit(redis_url), urlsplit(amqp_url)
    redis_proxy = await tcp_proxy(redis_target.hostname, redis_target.port or 6379)
    amqp_proxy = await tcp_proxy(amqp_target.hostname, amqp_target.port or 5672)
    await simulator.faults(latency_ms=20)
    dispatcher = await start_dispatcher(
        RSMS_REDIS_URL=redis_proxy.url_for(redis_url),
        RSMS_AMQP_URL=amqp_proxy.url_for(amqp_url),
        RSMS_DISPATCHER_PREFETCH="4",
    ).ready()

    jobs = [make_job(numbers(20, start=i * 20)) for i in range(60)]
    await publish(amqp_url, *jobs[:20])
    await eventually(simulator.stats, lambda s: s.get("delivered", 0) >= 100, what="sending under way")

    await redis_proxy.cut()
    await publish(amqp_url, *jobs[20:40])  # accepted while the dispatcher has no Redis
    await asyncio.sleep(2)
    await redis_proxy.restore()
    await eventually(simulator.stats, lambda s: s.get("delivered", 0) >= 500, what="sending after Redis came back")

    await amqp_proxy.cut()
    await publish(amqp_url, *jobs[40:])  # accepted while the dispatcher has no broker
    await asyncio.sleep(2)
    await amqp_proxy.restore()

    expected = [r for job in jobs for r in job.recipients]
    await eventually(
        simulator.stats, lambda s: s.get("delivered", 0) >= len(expected), within=90, what="every recipient sent"
    )
    delivered = await simulator.messages()
    per_recipient = Counter(m["to"] for m in delivered)
    assert set(per_recipient) == set(expected)
    assert set(per_recipient.values()) == {1}
    # A job handed back while Redis was away may hold recipients sent but not yet recorded
    # as sent: they go again with the same reference, and the provider delivers them once.
    repeats = (await simulator.stats()).get("duplicate_attempts", 0)
    assert repeats == sum(m["attempts"] - 1 for m in delivered)
    await eventually(lambda: depth(amqp_url, DISPATCH_QUEUE.name), lambda d: d == 0, what="the queue drained")
    assert dispatcher.process.poll() is None, "the dispatcher rides out both outages"


async def test_a_dispatcher_started_while_rabbitmq_is_down_waits_and_then_sends(
    amqp_url, simulator, start_dispatcher, tcp_proxy, free_port
):
    import httpx

    target = urlsplit(amqp_url)
    proxy = await tcp_proxy(target.hostname, target.port or 5672)
    await proxy.cut()
    dispatcher = start_dispatcher(RSMS_AMQP_URL=proxy.url_for(amqp_url))

    async def probe(path: str) -> int:
        try:
            async with httpx.AsyncClient(timeout=2) as client:
                return (await client.get(f"http://127.0.0.1:{dispatcher.http_port}{path}")).status_code
        except httpx.TransportError:
            return 0

    await eventually(lambda: probe("/health/live"), lambda s: s == 200, what="liveness while the broker is away")
    assert await probe("/health/ready") == 503
    job = make_job(numbers(5))
    await publish(amqp_url, job)  # accepted by ingest meanwhile: it waits on the queue
    await asyncio.sleep(1)
    assert dispatcher.process.poll() is None, "no crash while the broker is away"
    assert "broker_unavailable" in dispatcher.output()

    await proxy.restore()
    await eventually(simulator.stats, lambda s: s.get("delivered", 0) >= 5, within=60, what="the job sent")
    assert await probe("/health/ready") == 200


async def _dlq(amqp_url: str, *args: str) -> str:
    from click.testing import CliRunner

    from cli.dlq import dlq

    result = await asyncio.to_thread(CliRunner().invoke, dlq, list(args), env={"RSMS_AMQP_URL": amqp_url})
    assert result.exit_code == 0, result.output
    return result.output


async def test_a_delivery_limit_of_20_and_redis_down_30s_drop_no_job(
    amqp_url, redis_url, rabbit_admin, simulator, start_dispatcher, tcp_proxy
):
    """RabbitMQ 4 limits quorum queue deliveries to 20 (here by policy, as on 3.x): every job
    requeued through the outage that often is dead-lettered with its reason, never dropped,
    and a replay sends what it still owes, nobody twice."""
    import json

    rabbit_admin.set_policy(amqp_url, "limit-20", "^rsms\\.", '{"delivery-limit": 20}', "queues")
    target = urlsplit(redis_url)
    redis_proxy = await tcp_proxy(target.hostname, target.port or 6379)
    await start_dispatcher(RSMS_REDIS_URL=redis_proxy.url_for(redis_url), RSMS_DISPATCHER_PREFETCH="8").ready()

    jobs = [make_job(numbers(5, start=i * 5)) for i in range(60)]
    await publish(amqp_url, *jobs[:20])
    await eventually(simulator.stats, lambda s: s.get("delivered", 0) >= 50, what="sending under way")
    await redis_proxy.cut()
    await publish(amqp_url, *jobs[20:])  # accepted while the dispatcher has no Redis
    await asyncio.sleep(30)
    await redis_proxy.restore()

    async def accounted() -> tuple[set[str], dict[str, str]]:
        delivered = {m["to"] for m in await simulator.messages()}
        done = {str(j.message_id) for j in jobs if set(j.recipients) <= delivered}
        dead = {r["message_id"]: r["reason"] for r in json.loads(await _dlq(amqp_url, "list", "--json"))}
        return done, dead

    done, dead = await eventually(
        accounted, lambda a: len(a[0] | set(a[1])) == len(jobs), within=90, what="every job done or dead-lettered"
    )
    await eventually(lambda: depth(amqp_url, DISPATCH_QUEUE.name), lambda d: d == 0, what="the queue drained")
    dropped = [j for j in jobs if str(j.message_id) not in done and str(j.message_id) not in dead]
    print(f"jobs: {len(jobs)}, done: {len(done)}, dead-lettered: {len(dead)}, dropped: {len(dropped)}")
    assert dropped == []
    assert set(dead.values()) <= {"delivery_limit"}
    assert dead, "no job reached the delivery limit: the outage did not exercise it"

    assert f"Replayed {len(dead)} job(s)" in await _dlq(amqp_url, "replay")
    expected = [r for job in jobs for r in job.recipients]
    await eventually(
        simulator.stats, lambda s: s.get("delivered", 0) >= len(expected), within=60, what="replayed jobs sent"
    )
    per_recipient = Counter(m["to"] for m in await simulator.messages())
    assert set(per_recipient) == set(expected)
    assert set(per_recipient.values()) == {1}
