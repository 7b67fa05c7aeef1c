"""The webhook request: its body and its signature (README "Webhooks", binding for every
receiver).

    X-RSMS-Timestamp: <Unix seconds>
    X-RSMS-Signature: v1=<hex HMAC-SHA256(secret, "<timestamp>." + raw body)>

The timestamp is the time of this attempt (a retry is signed anew), so a receiver can
refuse anything more than 300 s away from its clock and a captured request cannot be
replayed later. `v1=` names the scheme, so another can be added beside it.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Sequence
from uuid import UUID

from shared.contracts import WebhookEvent

SIGNATURE_SCHEME = "v1"
TOLERANCE_SECONDS = 300


def request_body(events: Sequence[WebhookEvent]) -> bytes:
    return json.dumps({"events": [event.wire() for event in events]}, separators=(",", ":")).encode()


def signature(secret: str, timestamp: int, body: bytes) -> str:
    digest = hmac.new(secret.encode(), str(timestamp).encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"{SIGNATURE_SCHEME}={digest}"


def signed_headers(secret: str, timestamp: int, body: bytes, delivery_id: UUID) -> dict[str, str]:
    return {
        "Content-Type": "application/json",
        "User-Agent": "rsms-webhooks/1",
        "X-RSMS-Timestamp": str(timestamp),
        "X-RSMS-Signature": signature(secret, timestamp, body),
        "X-RSMS-Delivery": str(delivery_id),
    }
