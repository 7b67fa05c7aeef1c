"""What a project's webhook is told: outcome events, receipts and inbound messages mapped
to webhook events. Plain functions of the broker messages.

- an outcome (an event, or a batch of events: the dispatcher's one message per delivered
  job batch): one event per recipient the attempt settled (`sent` → message.sent;
  `failed` and `dead_lettered` → message.failed); `retrying` is not an event yet.
- a receipt: final ones only (`delivered` → message.delivered; undelivered, expired,
  rejected, deleted → message.failed); accepted/unknown are not final.
- an inbound message with a project: message.inbound. One without is nobody's to notify.

Event ids are derived from the source event's id, so a redelivered source event gives
the receiver the same ids (it dedupes by `id`).
"""

from __future__ import annotations

import uuid

from shared.contracts import (
    InboundMessage,
    OutcomeBatch,
    OutcomeEvent,
    ReceiptEvent,
    WebhookEvent,
    WebhookEventType,
)

OUTCOME_TYPES: dict[str, WebhookEventType] = {
    "sent": "message.sent",
    "failed": "message.failed",
    "dead_lettered": "message.failed",
}
RECEIPT_TYPES: dict[str, WebhookEventType] = {
    "delivered": "message.delivered",
    "undelivered": "message.failed",
    "expired": "message.failed",
    "rejected": "message.failed",
    "deleted": "message.failed",
}


def outcome_events(event: OutcomeEvent) -> list[WebhookEvent]:
    return [
        WebhookEvent(
            id=uuid.uuid5(event.event_id, f"{outcome.recipient}:{OUTCOME_TYPES[outcome.status]}"),
            type=OUTCOME_TYPES[outcome.status],
            project=event.project,
            status=outcome.status,
            error_code=outcome.error_code,
            occurred_at=event.occurred_at,
            created_at=event.occurred_at,
            test=event.test,
            message_id=event.message_id,
            recipient=outcome.recipient,
        )
        for outcome in event.outcomes
        if outcome.status in OUTCOME_TYPES
    ]


def outcome_message_events(message: OutcomeEvent | OutcomeBatch) -> list[WebhookEvent]:
    """An outcome message off the broker: one `OutcomeEvent`, or an `OutcomeBatch` of the
    events of one delivered job batch (which may be of several projects)."""
    if isinstance(message, OutcomeEvent):
        return outcome_events(message)
    return [webhook_event for event in message.events for webhook_event in outcome_events(event)]


def by_project(events: list[WebhookEvent]) -> dict[str, list[WebhookEvent]]:
    """The events of one broker message, per project (in their order): each project's go
    to its own URL."""
    projects: dict[str, list[WebhookEvent]] = {}
    for event in events:
        projects.setdefault(event.project, []).append(event)
    return projects


def receipt_events(receipt: ReceiptEvent) -> list[WebhookEvent]:
    kind = RECEIPT_TYPES.get(receipt.status)
    if kind is None or not receipt.final:
        return []
    return [
        WebhookEvent(
            id=uuid.uuid5(receipt.event_id, "webhook"),
            type=kind,
            project=receipt.project,
            status=receipt.status,
            error_code=receipt.error_code,
            occurred_at=receipt.occurred_at,
            created_at=receipt.received_at,
            test=receipt.test,
            message_id=receipt.message_id,
            recipient=receipt.recipient,
        )
    ]


def inbound_events(message: InboundMessage) -> list[WebhookEvent]:
    if message.project is None:
        return []
    return [
        WebhookEvent(
            id=uuid.uuid5(message.event_id, "webhook"),
            type="message.inbound",
            project=message.project,
            status="received",
            occurred_at=message.received_at,
            created_at=message.received_at,
            from_=message.sender,
            to=message.destination,
            text=message.text,
        )
    ]
