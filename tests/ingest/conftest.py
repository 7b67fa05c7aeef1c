"""Fixtures of the ingest tests that need the real server."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
from litestar.testing import AsyncTestClient

from services.ingest.app import create_app
from tests.ledger.support import eventually, http_status, ledger_process, ledger_settings
from tests.support.accounts import ProjectKeys, add_project
from tests.support.ingest_server import ServedIngest, served_ingest

StartIngest = Callable[..., ServedIngest]


@pytest.fixture
def keys(accounts_file: Path) -> ProjectKeys:
    """One project with its keys: what most API tests send with."""
    return add_project(accounts_file)


@pytest.fixture
async def client(ingest_settings: Any, keys: ProjectKeys) -> AsyncIterator[AsyncTestClient[Any]]:
    """The ingest app in process, with `keys`'s project in its accounts file."""
    async with AsyncTestClient(app=create_app(ingest_settings)) as test_client:
        yield test_client


@pytest.fixture
def start_ingest(
    amqp_url: str, redis_url: str, accounts_file: Path, tmp_path: Path, free_port: Callable[[], int]
) -> Iterator[StartIngest]:
    """Starts `rsms ingest` on a free port with this test's RabbitMQ vhost, Redis database and
    accounts file; `settings` are more RSMS_* variables (without the prefix)."""
    started = 0
    with ExitStack() as stack:

        def start(workers: int = 1, **settings: str) -> ServedIngest:
            env = {
                "RSMS_AMQP_URL": amqp_url,
                "RSMS_REDIS_URL": redis_url,
                "RSMS_ACCOUNTS_FILE": str(accounts_file),
                "RSMS_ACCOUNTS_RELOAD_SECONDS": "0.1",
                "RSMS_INGEST_WORKERS": str(workers),
                **{f"RSMS_{name.upper()}": value for name, value in settings.items()},
            }
            nonlocal started
            started += 1
            log_path = tmp_path / f"ingest-{started}.log"
            return stack.enter_context(served_ingest(env, free_port(), log_path, free_port()))

        yield start


@pytest.fixture
async def ledger(amqp_url: str, tmp_path: Path) -> AsyncIterator[None]:
    """A ledger process of its own (the test client's app shares this process's event loop
    handling in ways that would stall an in-process ledger's replies), ready to answer."""
    settings = ledger_settings(amqp_url, f"chdb://{tmp_path / 'chdb'}", "rsms")
    with ledger_process(settings, tmp_path / "ledger.log") as process:
        process.start()

        async def ready() -> bool:
            return await http_status(settings.ledger_http_port, "/health/ready") == 200

        await eventually(ready, timeout=90, what="the ledger to be ready")
        yield
