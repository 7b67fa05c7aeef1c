"""What a carrier connection reports besides submit answers: receipts and inbound SMS.

The provider adapter (SMPP `deliver_sm`, or the HTTP provider's callbacks) parses what
the carrier sends into these plain values and hands them to a `CarrierReportSink`
(`CarrierReports`: receipts to `receipts.ReceiptSink`, inbound SMS to
`inbound.InboundSink`). The sink matches receipts to the parts it was told about
(`Delivery.carrier_ids`), routes inbound SMS, publishes the contracts' `ReceiptEvent` /
`UnmatchedReceipt` / `InboundMessage`, and returns only once the broker confirmed them:
the adapter acknowledges the carrier (deliver_sm_resp) after that, so a crash in between
makes the carrier send it again, never loses it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from shared.contracts import ReceiptStatus


@dataclass(frozen=True, slots=True)
class CarrierReceipt:
    """One delivery receipt, for one part, as the carrier sent it."""

    carrier_id: str
    """The carrier's message id of the part (receipted_message_id, or the receipt's `id:`)."""
    status: ReceiptStatus
    error_code: str | None
    done_at: datetime | None
    received_at: datetime


@dataclass(frozen=True, slots=True)
class CarrierInbound:
    """One inbound (MO) SMS, reassembled if it came in parts."""

    sender: str
    destination: str
    text: str
    received_at: datetime
    carrier_id: str | None


class CarrierReportSink(Protocol):
    async def receipt(self, receipt: CarrierReceipt) -> None:
        """Returns once the resulting event is durably published; raises if it could not be."""
        ...

    async def inbound(self, message: CarrierInbound) -> None:
        """Returns once the `InboundMessage` is durably published; raises if it could not be."""
        ...


class ReceiptHandler(Protocol):
    async def receipt(self, receipt: CarrierReceipt) -> None: ...


class InboundHandler(Protocol):
    async def inbound(self, message: CarrierInbound) -> None: ...


@dataclass(frozen=True, slots=True)
class CarrierReports:
    """The `CarrierReportSink` a provider adapter is given: each kind to its own handler."""

    receipts: ReceiptHandler
    inbound_messages: InboundHandler

    async def receipt(self, receipt: CarrierReceipt) -> None:
        await self.receipts.receipt(receipt)

    async def inbound(self, message: CarrierInbound) -> None:
        await self.inbound_messages.inbound(message)
