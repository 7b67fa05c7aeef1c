"""The HTTP provider's delivery receipts: the callback it POSTs to the dispatcher.

    POST /v1/receipts      Authorization: Bearer <RSMS_RECEIPTS_CALLBACK_TOKEN>
    {"receipts": [{"id": "sim-1", "status": "delivered", "error": null,
                   "done_at": "2026-11-25T10:00:00.000Z"}]}
    200 {"received": 1} · 400 unreadable · 401 bad token · 503 not recorded: send again

The provider learns the URL and token from each send request (`HttpProvider`), as real
providers take a status-callback URL per message. 200 is answered only once every receipt
is published (or parked to be matched): a provider that gets anything else sends them
again, and a receipt sent twice publishes the same event ids.
"""

from __future__ import annotations

import asyncio
import hmac
from collections.abc import Mapping
from datetime import UTC, datetime

import msgspec

from services.dispatcher.carrier_reports import CarrierReceipt, ReceiptHandler
from shared.contracts import ReceiptStatus
from shared.log import get_logger

log = get_logger(__name__)

RECEIPTS_PATH = "/v1/receipts"


class _Receipt(msgspec.Struct):
    id: str
    status: ReceiptStatus
    error: str | None = None
    done_at: datetime | None = None


class _Callback(msgspec.Struct):
    receipts: list[_Receipt]


_decode = msgspec.json.Decoder(_Callback).decode


def read_callback(body: bytes, received_at: datetime) -> list[CarrierReceipt]:
    """Raises ValueError for a body that is not a receipts callback."""
    try:
        callback = _decode(body)
    except (msgspec.ValidationError, msgspec.DecodeError) as error:
        raise ValueError(str(error)) from error
    return [
        CarrierReceipt(
            carrier_id=r.id,
            status=r.status,
            error_code=r.error,
            done_at=r.done_at.astimezone(UTC) if r.done_at and r.done_at.tzinfo else r.done_at,
            received_at=received_at,
        )
        for r in callback.receipts
    ]


class ReceiptCallback:
    """The POST handler for the ops server (`shared.ops_server.PostHandler`)."""

    def __init__(self, sink: ReceiptHandler, token: str) -> None:
        self._sink = sink
        self._token = f"Bearer {token}".encode()

    async def __call__(self, headers: Mapping[str, str], body: bytes) -> tuple[int, bytes]:
        presented = headers.get("authorization", "").encode()
        if not hmac.compare_digest(presented, self._token):
            return 401, b'{"error":"invalid token"}'
        try:
            receipts = read_callback(body, datetime.now(UTC))
        except ValueError as error:
            return 400, msgspec.json.encode({"error": f"unreadable receipts: {str(error)[:200]}"})
        try:
            await asyncio.gather(*(self._sink.receipt(receipt) for receipt in receipts))
        except Exception as error:  # Redis or the broker: the provider sends them again
            log.warning("receipt callback not recorded", error=type(error).__name__, receipts=len(receipts))
            return 503, b'{"error":"not recorded, send again"}'
        return 200, msgspec.json.encode({"received": len(receipts)})
