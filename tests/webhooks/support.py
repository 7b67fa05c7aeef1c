"""Events as the dispatcher publishes them, and the webhook sender running in this process."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from faststream.rabbit import RabbitBroker

from services.webhooks.app import build_app
from services.webhooks.settings import WebhooksSettings
from shared import accounts as store
from shared.contracts import (
    Contract,
    InboundMessage,
    OutcomeBatch,
    OutcomeEvent,
    ReceiptEvent,
    RecipientOutcome,
    RecipientStatus,
)
from shared.topology import (
    INBOUND_EXCHANGE,
    OUTCOMES_EXCHANGE,
    RECEIPTS_EXCHANGE,
    bind_webhook_queues,
    declare_topology,
    declare_webhook_queues,
)
from tests.webhooks.receiver import free_port


def outcome(project: str, statuses: dict[str, RecipientStatus], *, test: bool = False) -> OutcomeEvent:
    return OutcomeEvent(
        event_id=uuid.uuid4(),
        message_id=uuid.uuid4(),
        project=project,
        tag="R-TEST",
        sender="RSMS",
        test=test,
        currency="NOK",
        attempt=1,
        occurred_at=datetime.now(UTC),
        outcomes=[
            RecipientOutcome(
                recipient=number,
                country="NO",
                status=status,
                segments=1,
                cost=Decimal("0.67") if status == "sent" else Decimal(0),
                provider_reference="ref-1" if status == "sent" else None,
                error_code=None if status == "sent" else "RECIPIENT_BLOCKED",
            )
            for number, status in statuses.items()
        ],
    )


def receipt(project: str, recipient: str = "+4790000001", status: str = "delivered", **extra: Any) -> ReceiptEvent:
    now = datetime.now(UTC)
    values: dict[str, Any] = {
        "event_id": uuid.uuid4(),
        "message_id": uuid.uuid4(),
        "project": project,
        "recipient": recipient,
        "status": status,
        "final": status not in ("accepted", "unknown"),
        "error_code": None if status == "delivered" else "001",
        "provider_reference": "carrier-1",
        "occurred_at": now,
        "received_at": now,
    }
    return ReceiptEvent(**(values | extra))


def inbound(project: str | None, text: str = "Yes please") -> InboundMessage:
    return InboundMessage(
        event_id=uuid.uuid4(),
        sender="+4798765432",
        destination="2222",
        text=text,
        received_at=datetime.now(UTC),
        project=project,
    )


EXCHANGES = {
    OutcomeEvent: OUTCOMES_EXCHANGE,
    OutcomeBatch: OUTCOMES_EXCHANGE,
    ReceiptEvent: RECEIPTS_EXCHANGE,
    InboundMessage: INBOUND_EXCHANGE,
}


@contextlib.asynccontextmanager
async def publisher(amqp_url: str, *, events_bound: bool = True) -> AsyncIterator[RabbitBroker]:
    """A broker to publish events with, the sender's queues declared as a sender that ran
    before would have left them: bound to the exchanges if it had a webhook to deliver to
    (`events_bound`), else not bound (and not unbound: a sender running now decides)."""
    broker = RabbitBroker(amqp_url, logger=None)
    await broker.connect()
    await declare_topology(broker)
    await declare_webhook_queues(broker, ())
    if events_bound:
        await bind_webhook_queues(broker, bound=True)
    try:
        yield broker
    finally:
        await broker.stop()


async def publish(broker: RabbitBroker, *events: Contract) -> None:
    """As the dispatcher does: persistent, confirmed, on the event's fanout exchange."""
    for event in events:
        await broker.publish(
            event.model_dump_json().encode(),
            exchange=EXCHANGES[type(event)],
            persist=True,
            content_type="application/json",
        )


def write_accounts(path: Path, webhooks: dict[str, tuple[str, str] | None]) -> None:
    """Projects, each with a webhook (url, secret) or none."""
    with store.editing(path) as data:
        for project, webhook in webhooks.items():
            store.create_project(data, project, project.title())
            if webhook is not None:
                store.set_webhook(data, project, *webhook)


def sender_settings(amqp_url: str, accounts_file: Path, **overrides: Any) -> WebhooksSettings:
    values: dict[str, Any] = {
        "amqp_url": amqp_url,
        "accounts_file": accounts_file,
        "accounts_reload_seconds": 0.1,
        "webhooks_batch_max_wait_ms": 50,
        "webhooks_retry_delays_ms": (200,),
        "webhooks_max_attempts": 3,
        "webhooks_request_timeout_seconds": 5.0,
        "webhooks_shutdown_seconds": 3.0,
        "webhooks_http_port": free_port(),
        "log_format": "console",
        "log_level": "WARNING",
    }
    return WebhooksSettings(**(values | overrides))


@contextlib.asynccontextmanager
async def running_sender(settings: WebhooksSettings) -> AsyncIterator[None]:
    app = build_app(settings)
    await app.start()
    try:
        yield
    finally:
        await app.stop()
