"""Building events, publishing them on the real broker and running a ledger: test helpers."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from faststream.rabbit import RabbitBroker

from services.ledger.app import build_app
from services.ledger.settings import LedgerSettings
from shared.contracts import (
    InboundMessage,
    OptOutAction,
    OutcomeEvent,
    ReceiptEvent,
    ReceiptStatus,
    RecipientOutcome,
    SmsJob,
)
from shared.countries import country_of
from shared.topology import ACCEPTED_EXCHANGE, INBOUND_EXCHANGE, OUTCOMES_EXCHANGE, RECEIPTS_EXCHANGE, declare_topology

PROJECT_ROOT = Path(__file__).resolve().parents[2]
PRICE = Decimal("0.67")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def numbers(count: int, start: int = 40_000_000) -> list[str]:
    return [f"+47{start + i}" for i in range(count)]


def make_job(
    project: str = "acme",
    recipients: list[str] | None = None,
    *,
    tag: str = "R-COV1RSMS",
    segments: int = 1,
    test: bool = False,
    store_body: bool = True,
    message: str = "Hello from the ledger tests",
) -> SmsJob:
    recipients = recipients if recipients is not None else numbers(3)
    return SmsJob(
        message_id=uuid.uuid4(),
        project=project,
        key_id="key-1",
        tag=tag,
        sender="RSMS",
        recipients=recipients,
        message=message,
        encoding="GSM-7",
        segments=segments,
        prices={"NO": PRICE},
        default_price=Decimal("0.80"),
        currency="NOK",
        estimated_cost=PRICE * segments * len(recipients),
        test=test,
        store_body=store_body,
        accepted_at=datetime.now(UTC),
    )


def make_outcome(
    job: SmsJob,
    *,
    attempt: int = 1,
    status: str = "sent",
    recipients: list[str] | None = None,
    replay: int = 0,
) -> OutcomeEvent:
    chosen = recipients if recipients is not None else job.recipients
    return OutcomeEvent(
        event_id=uuid.uuid5(job.message_id, f"{replay}:{attempt}"),
        message_id=job.message_id,
        replay=replay,
        project=job.project,
        tag=job.tag,
        sender=job.sender,
        test=job.test,
        currency=job.currency,
        attempt=attempt,
        occurred_at=datetime.now(UTC),
        outcomes=[
            RecipientOutcome(
                recipient=number,
                country=country_of(number),
                status=status,  # type: ignore[arg-type]
                segments=job.segments,
                cost=job.price_for(country_of(number)) * job.segments
                if status == "sent" and not job.test
                else Decimal(0),
                provider_reference=f"ref-{attempt}-{number[-4:]}" if status == "sent" else None,
                error_code=None if status == "sent" else "PROVIDER_ERROR",
            )
            for number in chosen
        ],
    )


def make_receipt(
    job: SmsJob,
    recipient: str,
    status: ReceiptStatus,
    *,
    error_code: str | None = None,
    occurred_at: datetime | None = None,
) -> ReceiptEvent:
    moment = occurred_at or datetime.now(UTC)
    return ReceiptEvent(
        event_id=uuid.uuid5(job.message_id, f"{recipient}:{status}"),
        message_id=job.message_id,
        project=job.project,
        recipient=recipient,
        status=status,
        final=status not in ("accepted", "unknown"),
        error_code=error_code,
        provider_reference=f"carrier-{recipient[-4:]}",
        occurred_at=moment,
        received_at=moment,
        test=job.test,
    )


def make_inbound(
    project: str | None,
    text: str,
    *,
    store_body: bool = True,
    action: OptOutAction | None = None,
    sender: str = "+4790000555",
) -> InboundMessage:
    return InboundMessage(
        event_id=uuid.uuid4(),
        sender=sender,
        destination="+4790000001",
        text=text,
        received_at=datetime.now(UTC),
        project=project,
        store_body=store_body and project is not None,
        action=action,
    )


def ledger_settings(amqp_url: str, dsn: str, database: str, **overrides: Any) -> LedgerSettings:
    values: dict[str, Any] = {
        "amqp_url": amqp_url,
        "clickhouse_dsn": dsn,
        "clickhouse_database": database,
        "ledger_http_port": free_port(),
        "ledger_batch_seconds": 0.2,
        "ledger_retry_initial_seconds": 0.2,
        "ledger_retry_max_seconds": 1.0,
        "ledger_shutdown_seconds": 5.0,
        "log_format": "console",
        "log_level": "WARNING",
    }
    values.update(overrides)
    return LedgerSettings(**values)


@contextlib.asynccontextmanager
async def running_ledger(settings: LedgerSettings) -> AsyncIterator[None]:
    """The ledger in this process (its chDB path must be this process's one)."""
    app = build_app(settings)
    await app.start()
    try:
        yield
    finally:
        await app.stop()


@contextlib.asynccontextmanager
async def publisher(amqp_url: str) -> AsyncIterator[RabbitBroker]:
    broker = RabbitBroker(amqp_url, logger=None)
    await broker.connect()
    await declare_topology(broker)
    try:
        yield broker
    finally:
        await broker.stop()


async def publish_job(broker: RabbitBroker, job: SmsJob) -> None:
    await broker.publish(
        job.model_dump_json().encode(),
        exchange=ACCEPTED_EXCHANGE,
        persist=True,
        content_type="application/json",
    )


async def publish_outcome(broker: RabbitBroker, event: OutcomeEvent) -> None:
    await broker.publish(
        event.model_dump_json().encode(),
        exchange=OUTCOMES_EXCHANGE,
        persist=True,
        content_type="application/json",
    )


async def publish_receipt(broker: RabbitBroker, event: ReceiptEvent) -> None:
    await broker.publish(
        event.model_dump_json().encode(),
        exchange=RECEIPTS_EXCHANGE,
        persist=True,
        content_type="application/json",
    )


async def publish_inbound(broker: RabbitBroker, message: InboundMessage) -> None:
    await broker.publish(
        message.model_dump_json().encode(),
        exchange=INBOUND_EXCHANGE,
        persist=True,
        content_type="application/json",
    )


async def eventually(
    check: Callable[[], Awaitable[bool]] | Callable[[], bool],
    *,
    timeout: float = 30.0,  # noqa: ASYNC109 -- a polling deadline
    interval: float = 0.1,
    what: str = "condition",
) -> None:
    """Poll `check` until it holds; fail with `what` after `timeout` seconds."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(interval)


def scalar(client: Any, sql: str) -> Any:
    return client.query(sql).result_rows[0][0]


class LedgerProcess:
    """`rsms ledger` as a child process, for tests that kill it or give it another ClickHouse."""

    def __init__(self, settings: LedgerSettings, log_path: Path) -> None:
        self.settings = settings
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None

    def environment(self) -> dict[str, str]:
        s = self.settings
        env = {k: v for k, v in os.environ.items() if not k.startswith("RSMS_")}
        env.update(
            {
                "RSMS_AMQP_URL": s.amqp_url,
                "RSMS_CLICKHOUSE_DSN": s.clickhouse_dsn,
                "RSMS_CLICKHOUSE_DATABASE": s.clickhouse_database,
                "RSMS_LEDGER_HTTP_PORT": str(s.ledger_http_port),
                "RSMS_LEDGER_BATCH_ROWS": str(s.ledger_batch_rows),
                "RSMS_LEDGER_BATCH_SECONDS": str(s.ledger_batch_seconds),
                "RSMS_LEDGER_PREFETCH": str(s.ledger_prefetch),
                "RSMS_LEDGER_RETRY_INITIAL_SECONDS": str(s.ledger_retry_initial_seconds),
                "RSMS_LEDGER_RETRY_MAX_SECONDS": str(s.ledger_retry_max_seconds),
                "RSMS_LOG_LEVEL": "INFO",
                "RSMS_LOG_FORMAT": "json",
            }
        )
        return env

    def start(self) -> None:
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "services.ledger.main"],
                cwd=PROJECT_ROOT,
                env=self.environment(),
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def terminate(self) -> int:
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(30)

    def ensure_stopped(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


@contextlib.contextmanager
def ledger_process(settings: LedgerSettings, log_path: Path) -> Iterator[LedgerProcess]:
    process = LedgerProcess(settings, log_path)
    try:
        yield process
    finally:
        process.ensure_stopped()


def query_chdb_dir(path: Path, sql: str) -> list[tuple[Any, ...]]:
    """Run `sql` on another process's chDB directory (this process may hold a different one)."""
    script = (
        "import json, sys, clickhouse_connect\n"
        "client = clickhouse_connect.get_client(dsn='chdb://' + sys.argv[1])\n"
        "print(json.dumps(client.query(sys.argv[2]).result_rows, default=str))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, str(path), sql],
        capture_output=True,
        check=True,
        cwd=PROJECT_ROOT,
        timeout=120,
    )
    import json

    return [tuple(row) for row in json.loads(done.stdout.decode().strip().splitlines()[-1])]


async def http_status(port: int, path: str) -> int | None:
    import httpx

    try:
        async with httpx.AsyncClient(timeout=2) as client:
            return (await client.get(f"http://127.0.0.1:{port}{path}")).status_code
    except httpx.TransportError:
        return None
