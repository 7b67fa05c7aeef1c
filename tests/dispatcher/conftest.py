"""Fixtures for the dispatcher's tests: a simulator per test, dispatchers on demand."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from tests.dispatcher.harness import Dispatcher, Simulator, declare

StartDispatcher = Callable[..., "Dispatcher"]


@pytest.fixture
async def simulator(free_port: Callable[[], int], tmp_path: Path) -> AsyncIterator[Simulator]:
    sim = Simulator(free_port(), tmp_path / "simulator.log", RSMS_PROVIDER_SIM_TIMEOUT_SECONDS="3")
    try:
        yield await sim.started()
    finally:
        await sim.stop()


@pytest.fixture
async def dispatcher_env(amqp_url: str, redis_url: str, simulator: Simulator) -> dict[str, str]:
    await declare(amqp_url)
    return {
        "RSMS_AMQP_URL": amqp_url,
        "RSMS_REDIS_URL": redis_url,
        "RSMS_PROVIDER_URL": simulator.url,
        "RSMS_PROVIDER_TIMEOUT_SECONDS": "1",
        "RSMS_PROVIDER_PROBE_INTERVAL_SECONDS": "0.2",
        "RSMS_DISPATCHER_RETRY_DELAYS_MS": "[100, 200, 400]",
        "RSMS_DISPATCHER_INFRA_BACKOFF_SECONDS": "0.2",
        "RSMS_DISPATCHER_SHUTDOWN_GRACE_SECONDS": "20",
        "RSMS_LOG_LEVEL": "INFO",
    }


@pytest.fixture
async def start_dispatcher(
    dispatcher_env: dict[str, str], free_port: Callable[[], int], tmp_path: Path
) -> AsyncIterator[Callable[..., Dispatcher]]:
    started: list[Dispatcher] = []

    def start(**overrides: str) -> Dispatcher:
        index = len(started)
        dispatcher = Dispatcher({**dispatcher_env, **overrides}, free_port(), tmp_path / f"dispatcher-{index}.log")
        started.append(dispatcher)
        return dispatcher

    yield start
    for dispatcher in started:
        dispatcher.close()
