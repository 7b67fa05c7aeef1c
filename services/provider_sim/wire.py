"""The simulator's batch send API on the wire (the shape of a typical provider's API).

POST /v1/messages   Authorization: Bearer <token>
{"messages": [{"from": "RSMS", "text": "...",
               "destinations": [{"to": "+4712345678", "reference": "<idempotency ref>"}]}],
 "callback": {"url": "http://…/v1/receipts", "token": "…"}}      (optional)
200 {"messages": [{"results": [{"reference": "...", "status": "accepted", "id": "sim-1"}]}]}
    status: accepted | duplicate | blocked | invalid | failed (transient)
401 bad token · 402 no credits · 503 / timeout: try again later

GET /v1/account     200 {"status": "active"} · 401 · 402

Admin, for the SMPP face (`smpp_face.py`): an MO message from a handset, sent as a deliver_sm:
POST /admin/smpp/inbound  {"from": "+4790000001", "to": "RSMS", "text": "STOP"}
200 {"deliver_sm_resp_status": 0} · 409 no receiving bind · 404 no SMPP face

Receipts, after a delay, for each accepted message (not for duplicates):
POST <callback url>  Authorization: Bearer <callback token>
{"receipts": [{"id": "sim-1", "status": "delivered" | "undelivered", "error": null | "001",
               "done_at": "2026-11-25T10:00:00.000Z"}]}      retried until answered 200
"""

from __future__ import annotations

from typing import Literal

import msgspec

ResultStatus = Literal["accepted", "duplicate", "blocked", "invalid", "failed"]


class Destination(msgspec.Struct):
    to: str
    reference: str


class OutboundMessage(msgspec.Struct):
    sender: str = msgspec.field(name="from")
    text: str = ""
    destinations: list[Destination] = msgspec.field(default_factory=list)


class Callback(msgspec.Struct):
    url: str
    token: str


class SendRequest(msgspec.Struct):
    messages: list[OutboundMessage]
    callback: Callback | None = None


class ReceiptBody(msgspec.Struct):
    id: str
    status: Literal["delivered", "undelivered"]
    error: str | None
    done_at: str


class ReceiptsCallback(msgspec.Struct):
    receipts: list[ReceiptBody]


class DestinationResult(msgspec.Struct):
    reference: str
    status: ResultStatus
    id: str | None = None


class MessageResult(msgspec.Struct):
    results: list[DestinationResult]


class SendResponse(msgspec.Struct):
    messages: list[MessageResult]


class ErrorBody(msgspec.Struct):
    error: str


class InboundRequest(msgspec.Struct):
    sender: str = msgspec.field(name="from")
    to: str
    text: str
