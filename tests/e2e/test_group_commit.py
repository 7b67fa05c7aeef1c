"""Group commit at the edge, through `rsms ingest` as served and the real broker: concurrent
sends share messages and every 200 is in the queue; a broker that refuses a group's
message fails every request of it and queues nothing; with a dispatcher, the provider
simulator and a ledger, every grouped message is sent once and billed once."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from shared.accounts import ProjectLimits
from shared.contracts import SmsJob, SmsJobBatch
from shared.topology import DISPATCH_QUEUE, LEDGER_ACCEPTED_QUEUE
from tests.dispatcher.conftest import dispatcher_env, simulator, start_dispatcher  # noqa: F401 (fixtures)
from tests.dispatcher.harness import eventually, publish
from tests.ingest.conftest import StartIngest, ledger, start_ingest  # noqa: F401 (fixtures)
from tests.support.accounts import ProjectKeys, add_project
from tests.support.queues import depth, drain

pytestmark = pytest.mark.slow

SEND = "/api/v1/sms/send"
SENDS = 60
FILLER = b'{"filler": true}'
# Wide enough that concurrent requests group even on a busy machine; the default is 2 ms.
GROUPING = {"publish_group_max_wait_ms": "20", "publish_group_max_jobs": "16"}


@pytest.fixture
def keys(accounts_file: Path) -> ProjectKeys:
    limits = ProjectLimits(requests_per_minute=10_000, tag_requests_per_minute=10_000, concurrent_requests=1_000)
    return add_project(accounts_file, "acme", limits=limits)


def recipient(n: int) -> str:
    return f"+4790{n:06d}"


async def send_all(url: str, key: str, count: int, **headers: str) -> list[httpx.Response]:
    async with httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=30) as client:

        async def send(n: int) -> httpx.Response:
            extra = {"Idempotency-Key": f"{headers['idempotency']}-{n}"} if "idempotency" in headers else {}
            body = {"tag": "billing", "recipients": [recipient(n)], "message": f"Reminder {n}"}
            return await client.post(SEND, json=body, headers=extra)

        return list(await asyncio.gather(*(send(n) for n in range(count))))


def jobs_of(bodies: list[dict[str, Any]]) -> list[SmsJob]:
    jobs: list[SmsJob] = []
    for body in bodies:
        if "jobs" in body:
            jobs.extend(SmsJobBatch.model_validate(body).jobs)
        else:
            jobs.append(SmsJob.model_validate(body))
    return jobs


async def test_concurrent_sends_share_messages_and_every_200_is_queued_once(
    start_ingest: StartIngest,  # noqa: F811
    keys: ProjectKeys,
    amqp_url: str,
) -> None:
    served = start_ingest(workers=1, **GROUPING)
    responses = await send_all(served.url, keys.live_key, SENDS)
    assert [r.status_code for r in responses] == [200] * SENDS, [r.text for r in responses if r.status_code != 200]
    answered = sorted(r.json()["data"]["messageId"] for r in responses)

    for queue in (DISPATCH_QUEUE.name, LEDGER_ACCEPTED_QUEUE.name):
        messages = await drain(amqp_url, queue)
        jobs = jobs_of([m["body"] for m in messages])
        assert sorted(str(j.message_id) for j in jobs) == answered, queue  # each once, none unanswered
        assert len(messages) < SENDS, f"{queue}: concurrent sends should share messages"
        assert max(len(m["body"].get("jobs", [None])) for m in messages) <= 16
        assert all(m["properties"]["delivery_mode"] == 2 for m in messages)


async def test_a_refused_group_fails_every_request_of_it_and_queues_nothing(
    start_ingest: StartIngest,  # noqa: F811
    keys: ProjectKeys,
    amqp_url: str,
    rabbit_admin: Any,
) -> None:
    served = start_ingest(workers=1, **GROUPING)
    # Both queues the accepted exchange feeds refuse every message: the broker nacks.
    pattern = f"^({DISPATCH_QUEUE.name}|{LEDGER_ACCEPTED_QUEUE.name})$".replace(".", "\\.")
    rabbit_admin.set_policy(amqp_url, "refuse", pattern, '{"max-length": 0}', "queues")
    await asyncio.sleep(1)  # the policy reaches the queues
    # A quorum queue takes a message while it is within its limit, and refuses from then
    # on: a filler puts each queue over it.
    await publish(amqp_url, FILLER)
    before = [await depth(amqp_url, q) for q in (DISPATCH_QUEUE.name, LEDGER_ACCEPTED_QUEUE.name)]
    refused = await send_all(served.url, keys.live_key, 20, idempotency="refused")
    assert [r.status_code for r in refused] == [500] * 20, [r.text for r in refused]
    for response in refused:
        error = response.json()["error"]
        assert error["code"] == "INTERNAL_ERROR" and "nothing was queued" in error["message"]
    assert [await depth(amqp_url, q) for q in (DISPATCH_QUEUE.name, LEDGER_ACCEPTED_QUEUE.name)] == before

    # The same requests again (same Idempotency-Keys) once the broker takes them: each is
    # queued now, once, as a new message (the failed attempt's claim was released).
    rabbit_admin.set_policy(amqp_url, "refuse", pattern, '{"max-length": 1000000}', "queues")
    await asyncio.sleep(1)
    retried = await send_all(served.url, keys.live_key, 20, idempotency="refused")
    assert [r.status_code for r in retried] == [200] * 20, [r.text for r in retried]
    jobs = jobs_of([m["body"] for m in await drain(amqp_url, DISPATCH_QUEUE.name) if m["body"] != {"filler": True}])
    assert sorted(str(j.message_id) for j in jobs) == sorted(r.json()["data"]["messageId"] for r in retried)


async def test_grouped_sends_are_delivered_once_and_billed_once(
    start_ingest: StartIngest,  # noqa: F811
    keys: ProjectKeys,
    ledger: None,  # noqa: F811
    simulator: Any,  # noqa: F811
    start_dispatcher: Any,  # noqa: F811
) -> None:
    await start_dispatcher().ready()
    served = start_ingest(workers=1, **GROUPING)
    responses = await send_all(served.url, keys.live_key, SENDS)
    assert [r.status_code for r in responses] == [200] * SENDS

    await eventually(simulator.stats, lambda s: s.get("delivered", 0) >= SENDS, what="every message sent")
    delivered = await simulator.messages()
    assert Counter(m["to"] for m in delivered) == Counter(recipient(n) for n in range(SENDS))

    today = datetime.now(UTC).strftime("%Y-%m-%d")
    headers = {"Authorization": f"Bearer {keys.live_key}"}
    async with httpx.AsyncClient(base_url=served.url, headers=headers, timeout=30) as client:

        async def usage() -> dict[str, Any]:
            answer = await client.get(f"/api/v1/usage?from={today}&to={today}&groupBy=tag")
            rows = answer.json()["data"]["rows"] if answer.status_code == 200 else []
            return {row["tag"]: row for row in rows}

        await eventually(usage, lambda u: u.get("billing", {}).get("smsSegments", 0) >= SENDS, what="usage")
        for response in responses[:5]:
            status = await client.get(f"/api/v1/sms/{response.json()['data']['messageId']}")
            assert status.json()["data"]["status"] in ("sent", "delivered"), status.text
        await asyncio.sleep(1)  # a second recording would show by now
        billed = (await usage())["billing"]
    assert billed["smsSegments"] == SENDS and billed["cost"] == f"{0.67 * SENDS:.2f} NOK"
