"""Fixtures for the SMPP provider's tests: a test SMSC per test, providers bound to it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from services.dispatcher.carrier_reports import CarrierInbound, CarrierReceipt
from services.dispatcher.settings import DispatcherSettings
from services.dispatcher.smpp.provider import SmppConfig, SmppProvider
from tests.dispatcher.harness import Dispatcher, declare
from tests.support.smsc import TestSmsc


class RecordingSink:
    """What the provider handed on; `fail` makes it raise, as a broker outage would."""

    def __init__(self) -> None:
        self.got_receipts: list[CarrierReceipt] = []
        self.got_inbound: list[CarrierInbound] = []
        self.fail = False

    async def receipt(self, receipt: CarrierReceipt) -> None:
        if self.fail:
            raise ConnectionError("broker away")
        self.got_receipts.append(receipt)

    async def inbound(self, message: CarrierInbound) -> None:
        if self.fail:
            raise ConnectionError("broker away")
        self.got_inbound.append(message)


@pytest.fixture
async def smsc(free_port: Callable[[], int], tmp_path: Path) -> AsyncIterator[TestSmsc]:
    server = TestSmsc(free_port(), tmp_path / "smsc.jsonl", "rsms", "test-pw")
    try:
        yield await server.start()
    finally:
        await server.stop()


def smpp_settings(smsc: TestSmsc, **overrides: Any) -> DispatcherSettings:
    values: dict[str, Any] = {
        "provider_kind": "smpp",
        "smpp_host": "127.0.0.1",
        "smpp_port": smsc.port,
        "smpp_system_id": smsc.system_id,
        "smpp_password": smsc.password,
        "smpp_response_timeout_seconds": 3.0,
        "smpp_throttle_backoff_seconds": 0.05,
        "smpp_bind_wait_seconds": 3.0,
        "smpp_reconnect_max_seconds": 0.5,
        "smpp_unbind_grace_seconds": 2.0,
        **overrides,
    }
    return DispatcherSettings.model_validate(values)


@pytest.fixture
async def make_provider(smsc: TestSmsc) -> AsyncIterator[Callable[..., SmppProvider]]:
    providers: list[SmppProvider] = []

    def make(sink: RecordingSink | None = None, **overrides: Any) -> SmppProvider:
        config = SmppConfig.from_settings(smpp_settings(smsc, **overrides))
        provider = SmppProvider(config, sink)
        providers.append(provider)
        return provider

    yield make
    await asyncio.gather(*(p.close() for p in providers))


@pytest.fixture
async def start_smpp_dispatcher(
    amqp_url: str, redis_url: str, smsc: TestSmsc, free_port: Callable[[], int], tmp_path: Path
) -> AsyncIterator[Callable[..., Dispatcher]]:
    """Real dispatcher processes sending through the test SMSC."""
    await declare(amqp_url)
    env = {
        "RSMS_AMQP_URL": amqp_url,
        "RSMS_REDIS_URL": redis_url,
        "RSMS_PROVIDER_KIND": "smpp",
        "RSMS_SMPP_HOST": "127.0.0.1",
        "RSMS_SMPP_PORT": str(smsc.port),
        "RSMS_SMPP_SYSTEM_ID": smsc.system_id,
        "RSMS_SMPP_PASSWORD": smsc.password,
        "RSMS_SMPP_RESPONSE_TIMEOUT_SECONDS": "3",
        "RSMS_SMPP_RECONNECT_MAX_SECONDS": "0.5",
        "RSMS_PROVIDER_PROBE_INTERVAL_SECONDS": "0.2",
        "RSMS_DISPATCHER_RETRY_DELAYS_MS": "[100, 200, 400]",
        "RSMS_DISPATCHER_INFRA_BACKOFF_SECONDS": "0.2",
        "RSMS_DISPATCHER_SHUTDOWN_GRACE_SECONDS": "20",
        "RSMS_LOG_LEVEL": "INFO",
    }
    started: list[Dispatcher] = []

    def start(**overrides: str) -> Dispatcher:
        dispatcher = Dispatcher({**env, **overrides}, free_port(), tmp_path / f"dispatcher-{len(started)}.log")
        started.append(dispatcher)
        return dispatcher

    yield start
    for dispatcher in started:
        dispatcher.close()
