"""Checking that a webhook request came from your gateway, and reading its events.

The gateway signs each webhook request: `X-RSMS-Timestamp` is the Unix time in seconds,
`X-RSMS-Signature` is `v1=` and the lowercase hex HMAC-SHA256, keyed with the project's
webhook secret, of `<timestamp>.<raw body>`. A request older (or newer) than `tolerance`
seconds is refused, so a recorded request cannot be replayed later.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from rsms_client.errors import WebhookVerificationError
from rsms_client.models import parse_timestamp

TIMESTAMP_HEADER = "X-RSMS-Timestamp"
SIGNATURE_HEADER = "X-RSMS-Signature"
SIGNATURE_SCHEME = "v1"
DEFAULT_TOLERANCE_SECONDS = 300


@dataclass(frozen=True)
class WebhookEvent:
    """One event of a webhook request. Message events (`message.sent`, `message.delivered`,
    `message.failed`) carry `message_id` and `recipient`; `message.inbound` carries
    `from_`, `to` and `text` instead. Null where the gateway does not know."""

    id: str
    type: str
    project: str | None
    message_id: str | None
    recipient: str | None
    status: str | None
    error_code: str | None
    occurred_at: datetime | None
    created_at: datetime | None
    test: bool
    from_: str | None
    to: str | None
    text: str | None

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> WebhookEvent:
        return cls(
            id=str(data["id"]),
            type=str(data["type"]),
            project=data.get("project"),
            message_id=data.get("messageId"),
            recipient=data.get("recipient"),
            status=data.get("status"),
            error_code=data.get("errorCode"),
            occurred_at=parse_timestamp(data.get("occurredAt")),
            created_at=parse_timestamp(data.get("createdAt")),
            test=bool(data.get("test", False)),
            from_=data.get("from"),
            to=data.get("to"),
            text=data.get("text"),
        )


def sign_webhook(secret: str | bytes, timestamp: int, raw_body: bytes) -> str:
    """The `X-RSMS-Signature` value of `raw_body` sent at `timestamp` (Unix seconds)."""
    key = secret.encode() if isinstance(secret, str) else secret
    digest = hmac.new(key, str(timestamp).encode() + b"." + raw_body, hashlib.sha256).hexdigest()
    return f"{SIGNATURE_SCHEME}={digest}"


def verify_webhook(
    secret: str | bytes,
    timestamp_header: str | None,
    signature_header: str | None,
    raw_body: bytes,
    tolerance: int = DEFAULT_TOLERANCE_SECONDS,
) -> list[WebhookEvent]:
    """The events of a webhook request whose signature and timestamp hold; else raises
    `WebhookVerificationError`.

    Pass the body exactly as received (bytes, before any JSON parsing) and the two header
    values. The signature header may list several signatures separated by commas (while a
    secret is being rotated); one valid `v1=` signature is enough.
    """
    if not timestamp_header or not signature_header:
        raise WebhookVerificationError(f"missing {TIMESTAMP_HEADER} or {SIGNATURE_HEADER} header")
    try:
        timestamp = int(timestamp_header.strip())
    except ValueError:
        raise WebhookVerificationError(f"{TIMESTAMP_HEADER} is not Unix seconds") from None
    expected = sign_webhook(secret, timestamp, raw_body)
    offered = [part.strip() for part in signature_header.split(",")]
    # Compared in constant time, so the signature cannot be guessed byte by byte.
    if not any(hmac.compare_digest(expected.encode(), candidate.encode()) for candidate in offered):
        raise WebhookVerificationError("signature does not match the body and timestamp")
    # After the signature: a timestamp is only worth checking once it is known to be the gateway's.
    if abs(time.time() - timestamp) > tolerance:
        raise WebhookVerificationError(f"timestamp more than {tolerance} s away from now: a replayed request?")
    try:
        body = json.loads(raw_body)
        return [WebhookEvent.from_json(event) for event in body["events"]]
    except (ValueError, KeyError, TypeError) as error:
        raise WebhookVerificationError(f"signed, but not a webhook body: {error}") from error
