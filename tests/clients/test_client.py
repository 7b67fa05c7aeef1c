"""The SDK against the real ingest server (`rsms ingest`, real Redis and RabbitMQ): typed
results, the contract's errors, retries that keep one Idempotency-Key, send_many."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from rsms_client import (
    ApiError,
    AsyncRsmsClient,
    ErrorCode,
    RetryPolicy,
    RsmsClient,
    SendManyError,
    SendProgress,
    SendResult,
)
from shared.accounts import ProjectLimits
from shared.topology import DISPATCH_QUEUE
from tests.clients.conftest import StartIngest
from tests.support.accounts import add_project
from tests.support.queues import depth, drain

HELLO = "Hello from the SDK"


class Recorder:
    """Every attempt the SDK made, through httpx's event hooks: what went out, what came back."""

    def __init__(self) -> None:
        self.requests: list[httpx.Request] = []
        self.statuses: list[int] = []
        self.retry_afters: list[int] = []

    def _response(self, response: httpx.Response) -> None:
        self.statuses.append(response.status_code)
        if "Retry-After" in response.headers:
            self.retry_afters.append(int(response.headers["Retry-After"]))

    def hooks(self) -> dict[str, list[Any]]:
        return {"request": [self.requests.append], "response": [self._response]}

    async def _arequest(self, request: httpx.Request) -> None:
        self.requests.append(request)

    async def _aresponse(self, response: httpx.Response) -> None:
        self._response(response)

    def async_hooks(self) -> dict[str, list[Any]]:
        return {"request": [self._arequest], "response": [self._aresponse]}

    def idempotency_keys(self) -> list[str | None]:
        return [r.headers.get("Idempotency-Key") for r in self.requests]


class AnswerLostOnce(httpx.HTTPTransport):
    """The request reaches the gateway; its first answer is lost on the way back, as when a
    connection breaks after the gateway queued the message."""

    def __init__(self) -> None:
        super().__init__()
        self.lost = 0

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = super().handle_request(request)
        if self.lost == 0:
            self.lost += 1
            response.read()
            response.close()
            raise httpx.ReadError("connection reset before the answer arrived", request=request)
        return response


def numbers(count: int) -> list[str]:
    return [f"+4791{i:06d}" for i in range(count)]


async def test_send_returns_a_typed_result_and_queues_one_job(
    start_ingest: StartIngest, accounts_file: Path, amqp_url: str
) -> None:
    keys = add_project(accounts_file)
    ingest = start_ingest()
    with RsmsClient(ingest.url, keys.live_key) as sms:
        result = sms.send("billing", ["+4712345678", "+4787654321", "+4712345678"], "Your invoice is due.")
    assert isinstance(result, SendResult)
    assert result.status == "queued"
    assert (result.recipient_count, result.sms_segments_per_recipient, result.total_sms_segments) == (2, 1, 2)
    assert result.estimated_cost == "1.34 NOK"
    assert result.timestamp is not None and result.timestamp.tzinfo is not None
    [job] = await drain(amqp_url, DISPATCH_QUEUE.name, expect=1)
    assert job["body"]["message_id"] == result.message_id


async def test_errors_carry_the_contract_code_message_and_details_and_are_not_retried(
    start_ingest: StartIngest, accounts_file: Path, amqp_url: str
) -> None:
    keys = add_project(accounts_file)
    ingest = start_ingest()
    recorder = Recorder()
    with (
        httpx.Client(event_hooks=recorder.hooks()) as http,
        RsmsClient(ingest.url, keys.live_key, http_client=http) as sms,
    ):
        with pytest.raises(ApiError) as invalid:
            sms.send("billing", ["+47abc", "12345678"], "x" * 1001)
        assert invalid.value.status == 400
        assert invalid.value.code == ErrorCode.VALIDATION_ERROR
        assert invalid.value.message == "Invalid request payload"
        assert any(d.startswith("recipients[0]") for d in invalid.value.details)
        assert any(d.startswith("message") for d in invalid.value.details)

        with pytest.raises(ApiError) as tag:
            sms.send("no-such-tag", ["+4712345678"], HELLO)
        assert (tag.value.status, tag.value.code) == (400, "INVALID_TAG")

    assert recorder.statuses == [400, 400]  # a client error is answered once, never retried

    with RsmsClient(ingest.url, "sk_live_" + "x" * 40) as stranger, pytest.raises(ApiError) as denied:
        stranger.send("billing", ["+4712345678"], HELLO)
    assert (denied.value.status, denied.value.code, denied.value.message) == (
        401,
        ErrorCode.UNAUTHORIZED,
        "Invalid or missing API key",
    )
    assert await depth(amqp_url, DISPATCH_QUEUE.name) == 0


async def test_a_429_is_retried_after_its_retry_after_with_the_same_idempotency_key(
    start_ingest: StartIngest, accounts_file: Path, amqp_url: str
) -> None:
    keys = add_project(accounts_file, limits=ProjectLimits(requests_per_minute=1))
    ingest = start_ingest()
    auth = {"Authorization": f"Bearer {keys.live_key}"}
    async with httpx.AsyncClient() as other:
        first = await other.post(
            f"{ingest.url}/api/v1/sms/send",
            headers=auth,
            json={"tag": "billing", "recipients": ["+4712345678"], "message": "1"},
        )
    assert first.status_code == 200  # the key's one request of this minute

    recorder = Recorder()
    started = time.monotonic()
    with (
        httpx.Client(event_hooks=recorder.hooks()) as http,
        RsmsClient(ingest.url, keys.live_key, http_client=http) as sms,
    ):
        result = sms.send("billing", ["+4787654321"], HELLO)
    waited = time.monotonic() - started

    assert recorder.statuses[0] == 429 and recorder.statuses[-1] == 200
    keys_sent = recorder.idempotency_keys()
    assert len(set(keys_sent)) == 1 and keys_sent[0], keys_sent  # one logical send, one key on every attempt
    # It waited as told: Retry-After is whole seconds until the key's first request leaves the minute.
    assert waited >= recorder.retry_afters[0] - 1 >= 50, (waited, recorder.retry_afters)
    jobs = await drain(amqp_url, DISPATCH_QUEUE.name, expect=2)
    assert [job["body"]["message_id"] for job in jobs][1] == result.message_id and len(jobs) == 2


async def test_an_answer_lost_after_the_send_is_retried_with_the_same_key_and_queued_once(
    start_ingest: StartIngest, accounts_file: Path, amqp_url: str
) -> None:
    keys = add_project(accounts_file)
    ingest = start_ingest()
    transport = AnswerLostOnce()
    recorder = Recorder()
    with (
        httpx.Client(transport=transport, event_hooks=recorder.hooks()) as http,
        RsmsClient(ingest.url, keys.live_key, http_client=http) as sms,
    ):
        result = sms.send("billing", ["+4712345678"], HELLO)
    assert transport.lost == 1 and len(recorder.requests) == 2
    assert len(set(recorder.idempotency_keys())) == 1
    [job] = await drain(amqp_url, DISPATCH_QUEUE.name, expect=1, wait=2)
    assert job["body"]["message_id"] == result.message_id  # the retry got the first send's answer
    assert await depth(amqp_url, DISPATCH_QUEUE.name) == 0


async def test_a_5xx_is_retried_until_the_broker_is_back_with_the_same_key(
    start_ingest: StartIngest, accounts_file: Path, amqp_url: str, tcp_proxy: Any
) -> None:
    keys = add_project(accounts_file)
    target = urlsplit(amqp_url)
    proxy = await tcp_proxy(target.hostname, target.port or 5672)
    ingest = start_ingest(amqp_url=proxy.url_for(amqp_url), publish_timeout_seconds="1")
    await proxy.cut()

    async def broker_back_later() -> None:
        await asyncio.sleep(3)
        await proxy.restore()

    recorder = Recorder()
    restoring = asyncio.create_task(broker_back_later())
    async with (
        httpx.AsyncClient(event_hooks=recorder.async_hooks()) as http,
        AsyncRsmsClient(ingest.url, keys.live_key, http_client=http, retry=RetryPolicy(max_attempts=20)) as sms,
    ):
        result = await sms.send("billing", ["+4712345678"], HELLO)
    await restoring
    assert recorder.statuses[0] == 500 and recorder.statuses[-1] == 200
    assert len(set(recorder.idempotency_keys())) == 1
    [job] = await drain(amqp_url, DISPATCH_QUEUE.name, expect=1)
    assert job["body"]["message_id"] == result.message_id


async def test_send_many_splits_any_number_into_1000_recipient_requests_within_the_rate_limit(
    start_ingest: StartIngest, accounts_file: Path, amqp_url: str
) -> None:
    # Two requests a minute: the third batch has to wait for the window, not be refused.
    keys = add_project(accounts_file, limits=ProjectLimits(requests_per_minute=2))
    ingest = start_ingest()
    recipients = numbers(2500)
    seen: list[SendProgress] = []
    recorder = Recorder()
    async with (
        httpx.AsyncClient(event_hooks=recorder.async_hooks()) as http,
        AsyncRsmsClient(ingest.url, keys.live_key, http_client=http) as sms,
    ):
        result = await sms.send_many("billing", [*recipients, recipients[0]], HELLO, progress=seen.append)

    assert [r.recipient_count for r in result.results] == [1000, 1000, 500]
    assert result.recipient_count == 2500 and result.total_sms_segments == 2500
    assert [(p.batches_sent, p.batches_total, p.recipients_sent, p.recipients_total) for p in seen] == [
        (1, 3, 1000, 2500),
        (2, 3, 2000, 2500),
        (3, 3, 2500, 2500),
    ]
    assert recorder.statuses == [200, 200, 200]  # paced by X-RateLimit-Remaining/Reset: never refused
    assert len(set(recorder.idempotency_keys())) == 3
    jobs = await drain(amqp_url, DISPATCH_QUEUE.name, expect=3)
    assert sorted(r for job in jobs for r in job["body"]["recipients"]) == sorted(recipients)


async def test_send_many_stops_at_a_failed_batch_and_says_what_is_left(
    start_ingest: StartIngest, accounts_file: Path, amqp_url: str
) -> None:
    keys = add_project(accounts_file)
    ingest = start_ingest()
    recipients = [*numbers(3), "+47abc", *numbers(5)[3:]]
    with RsmsClient(ingest.url, keys.live_key) as sms:
        with pytest.raises(SendManyError) as stopped:
            sms.send_many("billing", recipients, HELLO, batch_size=2, idempotency_key="campaign-7")
        assert [r.recipient_count for r in stopped.value.sent] == [2]
        assert stopped.value.remaining == recipients[2:]
        assert isinstance(stopped.value.error, ApiError) and stopped.value.error.code == ErrorCode.VALIDATION_ERROR

        # Fixed and sent again with the same key: the batch already queued is not queued twice.
        again = sms.send_many(
            "billing", [r for r in recipients if r != "+47abc"], HELLO, batch_size=2, idempotency_key="campaign-7"
        )
    assert again.results[0].message_id == stopped.value.sent[0].message_id
    jobs = await drain(amqp_url, DISPATCH_QUEUE.name, expect=3)
    assert sorted(r for job in jobs for r in job["body"]["recipients"]) == sorted(numbers(5))
