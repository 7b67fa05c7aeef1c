"""The SDK against the whole gateway (`rsms up`): a send followed through status() until
sent and delivered, then usage(); sync and async alike."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import TypeVar

import pytest

from rsms_client import ApiError, AsyncRsmsClient, ErrorCode, MessageStatus, RsmsClient, Usage
from shared import accounts as store
from tests.support.demo_gateway import DemoGateway, demo_gateway

pytestmark = pytest.mark.slow
T = TypeVar("T")


@pytest.fixture(scope="module")
def gateway(rabbit_admin: object, tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoGateway]:
    with demo_gateway(rabbit_admin, tmp_path_factory.mktemp("sdk-gateway")) as running:
        yield running


def live_key(gateway: DemoGateway) -> str:
    """A live key of the demo project (test traffic is never billed, so usage needs one)."""
    with store.editing(gateway.accounts_file) as data:
        _, key = store.issue_key(data, "demo", "live")
        store.set_tag(data, "demo", "billing", "Billing")
    with RsmsClient(gateway.url, key) as sms:
        deadline = time.monotonic() + 30
        while True:  # ingest reloads the accounts file within a second
            try:
                sms.usage("2026-01-01", "2026-01-01")
                break
            except ApiError as error:
                if error.code != ErrorCode.UNAUTHORIZED or time.monotonic() > deadline:
                    raise
                time.sleep(0.3)
    time.sleep(2)  # each ingest worker reloads on its own: let the other one catch up too
    return key


def wait_until(read: Callable[[], T], done: Callable[[T], object], what: str, timeout: float = 60) -> T:
    """`read()` until `done` with it; a 404 is a message not in the ledger yet."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = read()
            if done(value):
                return value
        except ApiError as error:
            if error.status != 404:
                raise
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.5)


def test_status_and_usage_follow_a_send(gateway: DemoGateway) -> None:
    key = live_key(gateway)
    today = datetime.now(UTC).date()
    with RsmsClient(gateway.url, key) as sms:
        sent = sms.send("billing", ["+4712345678", "+4787654321"], "Your invoice is due.")
        status = wait_until(
            lambda: sms.status(sent.message_id),
            lambda s: s.summary.delivered == 2,
            "both recipients delivered",
        )
        usage = wait_until(lambda: sms.usage(today, today, "tag"), lambda u: u.rows, "the send in usage")

        with pytest.raises(ApiError) as unknown:
            sms.status("6f1b3c3e-5d7a-4b8e-9c1d-2a3b4c5d6e7f")
        assert (unknown.value.status, unknown.value.code) == (404, ErrorCode.VALIDATION_ERROR)
        with pytest.raises(ApiError) as bad_day:
            sms.usage("2026-02-30", today)
        assert bad_day.value.code == ErrorCode.VALIDATION_ERROR and bad_day.value.details

    assert isinstance(status, MessageStatus)
    assert (status.message_id, status.status, status.tag, status.sender) == (
        sent.message_id,
        "sent",
        "billing",
        "Billing",
    )
    assert status.final and not status.test
    assert (status.recipient_count, status.total_sms_segments, status.cost) == (2, 2, "1.34 NOK")
    assert sorted(r.recipient for r in status.recipients) == ["+4712345678", "+4787654321"]
    assert {(r.status, r.delivery_status, r.sms_segments) for r in status.recipients} == {("sent", "delivered", 1)}
    assert all(r.updated_at is not None and r.updated_at.tzinfo is not None for r in status.recipients)

    assert isinstance(usage, Usage)
    assert (usage.date_from, usage.date_to, usage.group_by) == (today, today, "tag")
    [row] = usage.rows
    assert (row.group, row.messages, row.recipients, row.sms_segments, row.cost) == ("billing", 1, 2, 2, "1.34 NOK")
    assert (usage.totals.recipients, usage.totals.sms_segments, usage.totals.cost) == (2, 2, "1.34 NOK")


def test_the_async_client_reads_the_same(gateway: DemoGateway) -> None:
    async def main() -> tuple[MessageStatus, Usage]:
        async with AsyncRsmsClient(gateway.url, gateway.demo_key) as sms:
            sent = await sms.send("demo", ["+4712345678"], "Hello from the async client")
            status = await sms.wait_until_final(sent.message_id)
            today = datetime.now(UTC).date()
            return status, await sms.usage(today, today)

    status, usage = asyncio.run(main())
    assert (status.status, status.tag, status.test, status.cost) == ("sent", "demo", True, "0.00 NOK")
    assert all(row.group != "demo" for row in usage.rows)  # test traffic is never billed
