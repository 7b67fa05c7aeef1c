"""deliver_sm to carrier reports: receipts parsed, inbound parts reassembled, both handed on.

The answer to each deliver_sm (its deliver_sm_resp status) is what `DeliverHandler.handle`
returns, and it returns only after the sink did: the SMSC keeps (and sends again) what
was not acknowledged, so a crash or a broker outage before the publish loses nothing.
The parts of an inbound message are all answered together once the whole message was
published (or with a temporary error when the rest never came).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from services.dispatcher.carrier_reports import CarrierInbound, CarrierReceipt, CarrierReportSink
from services.dispatcher.smpp.encoding import decode_short_message
from services.dispatcher.smpp.pdu import (
    TLV_MESSAGE_STATE,
    TLV_RECEIPTED_MESSAGE_ID,
    TLV_SAR_MSG_REF_NUM,
    TLV_SAR_SEGMENT_SEQNUM,
    TLV_SAR_TOTAL_SEGMENTS,
    Deliver,
)
from services.dispatcher.smpp.status import ESME_ROK, ESME_RX_T_APPN
from shared.contracts import ReceiptStatus
from shared.log import get_logger

log = get_logger(__name__)

_STAT: dict[str, ReceiptStatus] = {
    "DELIVRD": "delivered",
    "EXPIRED": "expired",
    "DELETED": "deleted",
    "UNDELIV": "undelivered",
    "ACCEPTD": "accepted",
    "ENROUTE": "accepted",
    "UNKNOWN": "unknown",
    "REJECTD": "rejected",
}
# message_state TLV (SMPP 3.4 5.2.28), used where the text has no stat:
_MESSAGE_STATE: dict[int, ReceiptStatus] = {
    1: "accepted",
    2: "delivered",
    3: "expired",
    4: "deleted",
    5: "undelivered",
    6: "accepted",
    7: "unknown",
    8: "rejected",
}
_FIELD = re.compile(r"(id|sub|dlvrd|submit date|done date|stat|err):(\S*)", re.IGNORECASE)


def is_receipt(esm_class: int) -> bool:
    """esm_class message type bits 5-2: SMSC delivery receipt (0001) or intermediate notification (1000)."""
    return (esm_class >> 2) & 0x0F in (0b0001, 0b1000)


def parse_receipt(deliver: Deliver, received_at: datetime) -> CarrierReceipt | None:
    """None when the receipt names no message id: nothing could ever match it."""
    text = deliver.short_message.decode("latin-1")
    fields = {name.lower(): value for name, value in _FIELD.findall(text)}
    tlv_id = deliver.tlvs.get(TLV_RECEIPTED_MESSAGE_ID)
    carrier_id = tlv_id.rstrip(b"\0").decode("ascii", errors="replace") if tlv_id else fields.get("id", "")
    if not carrier_id:
        return None
    stat = fields.get("stat", "").upper()
    status: ReceiptStatus
    if stat:
        status = _STAT.get(stat, "unknown")
    elif (state := deliver.tlvs.get(TLV_MESSAGE_STATE)) is not None and state:
        status = _MESSAGE_STATE.get(state[0], "unknown")
    else:
        status = "unknown"
    error = fields.get("err")
    return CarrierReceipt(
        carrier_id=carrier_id,
        status=status,
        error_code=error if error and error.strip("0") else None,
        done_at=_smpp_date(fields.get("done date")),
        received_at=received_at,
    )


def _smpp_date(value: str | None) -> datetime | None:
    """YYMMDDhhmm[ss], taken as UTC (the receipt format carries no zone)."""
    if not value or not value.isdigit() or len(value) not in (10, 12):
        return None
    try:
        return datetime.strptime(value, "%y%m%d%H%M%S" if len(value) == 12 else "%y%m%d%H%M").replace(tzinfo=UTC)
    except ValueError:
        return None


def _sar(tlvs: dict[int, bytes]) -> tuple[int, int, int] | None:
    try:
        return (
            int.from_bytes(tlvs[TLV_SAR_MSG_REF_NUM], "big"),
            tlvs[TLV_SAR_TOTAL_SEGMENTS][0],
            tlvs[TLV_SAR_SEGMENT_SEQNUM][0],
        )
    except (KeyError, IndexError):
        return None


@dataclass
class _Pending:
    parts: dict[int, str] = field(default_factory=dict)
    done: asyncio.Future[int] = field(default_factory=lambda: asyncio.get_running_loop().create_future())


class DeliverHandler:
    """Turns each deliver_sm into a sink call and the status of its deliver_sm_resp."""

    def __init__(
        self,
        sink: CarrierReportSink | None,
        gsm7_packed: bool,
        reassembly_seconds: float,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._sink = sink
        self._packed = gsm7_packed
        self._reassembly_seconds = reassembly_seconds
        self._clock = clock
        self._pending: dict[tuple[str, str, int, int], _Pending] = {}

    async def handle(self, deliver: Deliver) -> int:
        if self._sink is None:
            # No publisher wired: the SMSC keeps it and sends it again later.
            log.warning("deliver_sm refused: no carrier report sink configured")
            return ESME_RX_T_APPN
        try:
            if is_receipt(deliver.esm_class):
                receipt = parse_receipt(deliver, self._clock())
                if receipt is None:
                    log.warning("receipt without a message id acknowledged and dropped", esm_class=deliver.esm_class)
                    return ESME_ROK
                await self._sink.receipt(receipt)
                return ESME_ROK
            return await self._inbound(deliver)
        except Exception as exc:
            log.warning("deliver_sm not handed on, the SMSC will retry", error=type(exc).__name__)
            return ESME_RX_T_APPN

    async def _inbound(self, deliver: Deliver) -> int:
        assert self._sink is not None
        part = decode_short_message(
            deliver.short_message,
            deliver.data_coding,
            deliver.esm_class,
            gsm7_packed=self._packed,
            sar=_sar(deliver.tlvs),
        )
        if part.concat is None or part.concat[1] <= 1:
            await self._sink.inbound(self._message(deliver, part.text))
            return ESME_ROK
        ref, total, seq = part.concat
        key = (deliver.source_addr, deliver.destination_addr, ref, total)
        pending = self._pending.setdefault(key, _Pending())
        pending.parts[seq] = part.text
        if len(pending.parts) < total:
            try:
                return await asyncio.wait_for(asyncio.shield(pending.done), self._reassembly_seconds)
            except TimeoutError:
                if self._pending.get(key) is pending:
                    del self._pending[key]
                    pending.done.set_result(ESME_RX_T_APPN)
                return ESME_RX_T_APPN
        del self._pending[key]
        text = "".join(pending.parts[i] for i in sorted(pending.parts))
        try:
            await self._sink.inbound(self._message(deliver, text))
        except Exception:
            pending.done.set_result(ESME_RX_T_APPN)
            raise
        pending.done.set_result(ESME_ROK)
        return ESME_ROK

    def _message(self, deliver: Deliver, text: str) -> CarrierInbound:
        return CarrierInbound(
            sender=_international(deliver.source_addr),
            destination=_international(deliver.destination_addr),
            text=text,
            received_at=self._clock(),
            carrier_id=None,
        )


def _international(address: str) -> str:
    """SMPP carries numbers without `+`; the gateway's contracts use E.164 with it."""
    return f"+{address}" if address.isdigit() else address
