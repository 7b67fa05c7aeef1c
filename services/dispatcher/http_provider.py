"""The adapter for the simulator's batch API (`services/provider_sim/wire.py`), over httpx.

It is also the template for a real provider's adapter: map the request, then map every
answer onto `Delivery` / `ProviderAccountError` in `classify_*` (pure functions, unit
tested). See PROVIDERS.md.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import httpx
import msgspec

from services.dispatcher.provider import (
    Delivery,
    DeliveryStatus,
    OutboundBatch,
    ProviderAccountError,
)
from shared.provider_state import ProviderState


class _Destination(msgspec.Struct, array_like=False):
    to: str
    reference: str


class _Message(msgspec.Struct):
    sender: str = msgspec.field(name="from")
    text: str = ""
    destinations: list[_Destination] = msgspec.field(default_factory=list)


class _ReceiptCallback(msgspec.Struct):
    url: str
    token: str


class _SendRequest(msgspec.Struct, omit_defaults=True):
    messages: list[_Message]
    callback: _ReceiptCallback | None = None
    """Where the provider POSTs the delivery receipts (`receipts_callback.py`)."""


class _Result(msgspec.Struct):
    reference: str
    status: Literal["accepted", "duplicate", "blocked", "invalid", "failed"]
    id: str | None = None


class _MessageResult(msgspec.Struct):
    results: list[_Result]


class _SendResponse(msgspec.Struct):
    messages: list[_MessageResult]


_encode = msgspec.json.Encoder().encode
_decode_response = msgspec.json.Decoder(_SendResponse).decode

_FAILED = Delivery(DeliveryStatus.TRANSIENT, detail="provider reported a temporary failure")
_BLOCKED = Delivery(DeliveryStatus.BLOCKED, detail="provider reports the number as blocked")
_INVALID = Delivery(DeliveryStatus.INVALID, detail="provider reports the number as invalid")


def classify_status(status_code: int) -> ProviderAccountError | Delivery | None:
    """What an HTTP status says about every recipient of the request; None: read the body."""
    if status_code == 200:
        return None
    if status_code in (401, 403):
        return ProviderAccountError(ProviderState.AUTH_ERROR, f"provider answered {status_code}")
    if status_code == 402:
        return ProviderAccountError(ProviderState.NO_CREDITS, "provider answered 402")
    if status_code == 429 or status_code >= 500:
        return Delivery(DeliveryStatus.TRANSIENT, detail=f"provider answered {status_code}")
    # Any other 4xx means this adapter built a request the provider does not accept: a
    # bug or an API change, not something a retry fixes, but nothing to lose a message
    # over either; retries give an operator time to notice before the dead-letter queue.
    return Delivery(DeliveryStatus.TRANSIENT, detail=f"provider rejected the request ({status_code})")


def classify_result(result: _Result) -> Delivery:
    status = result.status
    if status in ("accepted", "duplicate"):
        # A duplicate is a reference the provider already took: sent, once. Its receipts
        # name the provider's id (one per recipient: the provider does the splitting).
        return Delivery(DeliveryStatus.SENT, result.id, carrier_ids=(result.id,) if result.id else ())
    if status == "blocked":
        return _BLOCKED
    if status == "invalid":
        return _INVALID
    return _FAILED


class HttpProvider:
    def __init__(
        self,
        base_url: str,
        token: str,
        timeout_seconds: float,
        max_connections: int,
        receipt_callback: tuple[str, str] | None = None,
        deduplicates: bool = True,
    ) -> None:
        """`receipt_callback`: (URL, token) the provider sends delivery receipts to; None: none."""
        # The simulator's API deduplicates by the gateway's reference; an API that does
        # not makes every resend of an unknown outcome a possible second SMS.
        self.resends_are_safe = deduplicates
        self._callback = _ReceiptCallback(*receipt_callback) if receipt_callback else None
        self._client = httpx.AsyncClient(
            base_url=base_url,
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
            timeout=httpx.Timeout(timeout_seconds),
            limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections),
        )

    async def send(self, batches: Sequence[OutboundBatch]) -> list[list[Delivery]]:
        body = _encode(
            _SendRequest(
                [
                    _Message(
                        b.sender,
                        b.text,
                        [_Destination(to, ref) for to, ref in zip(b.recipients, b.references, strict=True)],
                    )
                    for b in batches
                ],
                self._callback,
            )
        )
        try:
            response = await self._client.post("/v1/messages", content=body)
        except httpx.TransportError as exc:
            # Timeouts included: the provider may have taken the batch, and the retry
            # carries the same references, so it cannot deliver twice.
            failure = Delivery(DeliveryStatus.TRANSIENT, detail=f"provider unreachable: {type(exc).__name__}")
            return [[failure] * len(b.recipients) for b in batches]
        verdict = classify_status(response.status_code)
        if isinstance(verdict, ProviderAccountError):
            raise verdict
        if verdict is not None:
            return [[verdict] * len(b.recipients) for b in batches]
        try:
            answer = _decode_response(response.content)
        except msgspec.DecodeError:
            failure = Delivery(DeliveryStatus.TRANSIENT, detail="provider answered an unreadable body")
            return [[failure] * len(b.recipients) for b in batches]
        return [_align(batch, message.results) for batch, message in zip(batches, answer.messages, strict=True)]

    async def account_state(self) -> ProviderState:
        try:
            response = await self._client.get("/v1/account")
        except httpx.TransportError:
            # Unreachable is not an account problem; the send path treats it as transient.
            return ProviderState.OK
        verdict = classify_status(response.status_code)
        return verdict.state if isinstance(verdict, ProviderAccountError) else ProviderState.OK

    async def close(self) -> None:
        await self._client.aclose()


def _align(batch: OutboundBatch, results: list[_Result]) -> list[Delivery]:
    if len(results) == len(batch.references) and all(
        r.reference == ref for r, ref in zip(results, batch.references, strict=True)
    ):
        return [classify_result(r) for r in results]
    # Out of order or incomplete: match by reference; anything unanswered is retried.
    by_reference = {r.reference: r for r in results}
    missing = Delivery(DeliveryStatus.TRANSIENT, detail="provider did not answer for this recipient")
    return [classify_result(r) if (r := by_reference.get(ref)) is not None else missing for ref in batch.references]
