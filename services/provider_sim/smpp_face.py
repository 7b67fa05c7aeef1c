"""The simulator's SMPP face: an SMSC for development, on `smpp34`'s server.

`smpp34.Server` runs the sessions (binds, enquire_link, unbind, framing, the codec) in
its Rust core and hands this module each bind (`Esme`), each `submit_sm`
(`SubmitSmEvent`, answered with `accept(message_id)` or `reject(status)`) and each
unbind. What is left here is what the simulated network does:

- a bind with another system_id than the configured one gets every submit_sm answered
  ESME_RINVSYSID, so a misconfigured gateway opens its circuit (PROVIDER_AUTH_ERROR).
  `smpp34` 1.5 accepts every bind and does not hand the password over, so the password is
  not checked (the refusal at bind time is tested against the npm SMSC instead);
- the run-time faults of the HTTP face that mean something here: `latency_ms` delays each
  submit_sm_resp, `invalid` numbers get ESME_RINVDSTADR, `recipient_error_rate` gets
  ESME_RSYSERR (not taken: safe to submit again), `auth_failure` ESME_RINVSYSID;
- a delivery receipt per accepted part (registered_delivery asked for one) as a
  deliver_sm after the receipt delay, `receipt_failure_rate` of them UNDELIV err:001,
  sent again a second later while no receiving bind takes it;
- `inject_inbound`: an MO message for the admin API, as a deliver_sm to a receiving bind.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import re
from collections import Counter
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import smpp34

from services.provider_sim.faults import Faults
from shared.log import get_logger

log = get_logger(__name__)

ESME_RSYSERR = 0x08
ESME_RINVDSTADR = 0x0B
ESME_RINVSYSID = 0x0F
# Optional parameter tags (SMPP 3.4 5.3.2): smpp34 exports them at run time only, its type
# stubs do not declare them.
TLV_RECEIPTED_MESSAGE_ID = 0x001E
TLV_MESSAGE_STATE = 0x0427
TLV_MESSAGE_PAYLOAD = 0x0424
RECEIPT_ESM_CLASS = 0x04  # message type "SMSC delivery receipt" (SMPP 3.4 5.2.12)
MESSAGE_STATE_DELIVERED = 2
MESSAGE_STATE_UNDELIVERABLE = 5
FAILURE_ERROR = "001"  # "absent subscriber", as the HTTP face reports it
RECEIPT_RETRY_SECONDS = 1.0
RECEIPT_MAX_ATTEMPTS = 60
TICK_SECONDS = 0.05
# Characters at the same code in GSM 03.38 and ASCII: such a text goes as data_coding 0
# one octet a character; anything else as UCS-2.
_GSM7_AS_ASCII = re.compile(r"[A-Za-z0-9 !\"#%&'()*+,\-./:;<=>?]*")


@dataclass(slots=True)
class Submitted:
    """One accepted submit_sm, as the admin API lists it (never the text)."""

    id: str
    session: str
    source: str
    destination: str
    data_coding: int
    esm_class: int
    at: str


@dataclass(slots=True)
class _Receipt:
    at: float
    system_id: str
    session: str
    submitted: Submitted
    failed: bool
    attempts: int = 0


def receipt_text(message_id: str, submitted_at: datetime, done_at: datetime, failed: bool) -> bytes:
    """The de-facto receipt format (SMPP 3.4 appendix B)."""
    stamp = "%y%m%d%H%M"
    stat, err = ("UNDELIV", FAILURE_ERROR) if failed else ("DELIVRD", "000")
    return (
        f"id:{message_id} sub:001 dlvrd:{'000' if failed else '001'} submit date:{submitted_at.strftime(stamp)} "
        f"done date:{done_at.strftime(stamp)} stat:{stat} err:{err} text:"
    ).encode("ascii")


def encode_inbound(text: str) -> tuple[int, bytes, list[smpp34.Tlv]]:
    """(data_coding, short_message, tlvs) of an MO text: GSM-7 where the octets are ASCII's,
    UCS-2 otherwise; past one short_message, the whole text in message_payload."""
    if _GSM7_AS_ASCII.fullmatch(text):
        data_coding, body, limit = 0, text.encode("ascii"), 160
    else:
        data_coding, body, limit = 8, text.encode("utf-16-be"), 140
    if len(body) <= limit:
        return data_coding, body, []
    return data_coding, b"", [smpp34.Tlv(TLV_MESSAGE_PAYLOAD, body)]


@dataclass
class SmppFace:
    host: str
    port: int
    system_id: str
    faults: Callable[[], Faults]
    """The simulator's current faults (the admin API replaces them at run time)."""
    counters: Counter[str]
    rng: random.Random
    receipt_delay_seconds: float
    submitted: list[Submitted] = field(default_factory=list)
    _server: smpp34.Server | None = None
    _binds: dict[str, smpp34.Esme] = field(default_factory=dict)
    _receipts: list[_Receipt] = field(default_factory=list)
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)
    _next_id: int = 1

    async def start(self) -> None:
        self._server = smpp34.Server(self.host, self.port, system_id="RSMS-SIM", inbound_capacity=8192)
        await self._server.start()
        self._spawn(self._serve())
        self._spawn(self._send_receipts())
        log.info("provider simulator SMPP face listening", host=self.host, port=self.port)

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._server is not None:
            await self._server.stop()

    def reset(self) -> None:
        self.submitted.clear()
        self._receipts.clear()

    async def inject_inbound(self, source: str, destination: str, text: str) -> int | None:
        """Sends an MO message to a receiving bind; the deliver_sm_resp status, None when none is bound."""
        receivers = self._receivers(None)
        if not receivers:
            return None
        data_coding, short_message, tlvs = encode_inbound(text)
        to = destination.removeprefix("+")
        numeric = to.isdigit()  # a number (TON 1 / NPI 1) or a sender name (TON 5 / NPI 0)
        answer = await receivers[0].deliver_sm(
            to,
            short_message,
            source_addr=source.removeprefix("+"),
            source_addr_ton=1,
            source_addr_npi=1,
            dest_addr_ton=1 if numeric else 5,
            dest_addr_npi=1 if numeric else 0,
            data_coding=data_coding,
            tlvs=tlvs,
        )
        self.counters["smpp_inbound_sent" if answer.is_success else "smpp_inbound_refused"] += 1
        return answer.command_status

    # -- sessions ------------------------------------------------------------------------

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _serve(self) -> None:
        assert self._server is not None
        while True:
            event = await self._server.next()
            if isinstance(event, smpp34.Esme):
                self._binds[event.session_id] = event
                self.counters["smpp_binds"] += 1
                log.info("smpp bind", session=event.session_id, receives=event.can_receive)
            elif isinstance(event, smpp34.SubmitSmEvent):
                self._on_submit(event)
            elif isinstance(event, smpp34.Unbound):
                self._binds.pop(event.session_id, None)
                log.info("smpp unbound", session=event.session_id)

    def _on_submit(self, event: smpp34.SubmitSmEvent) -> None:
        counters = self.counters
        counters["smpp_submits"] += 1
        faults = self.faults()
        bind = self._binds.get(event.session_id)
        destination = event.destination_addr
        status = None
        if faults.auth_failure or bind is None or bind.system_id != self.system_id:
            status = ESME_RINVSYSID
        elif destination in faults.invalid or f"+{destination}" in faults.invalid:
            status = ESME_RINVDSTADR
        elif faults.recipient_error_rate and self.rng.random() < faults.recipient_error_rate:
            status = ESME_RSYSERR
        if status is not None:
            counters["smpp_refused"] += 1
            event.reject(status)
            return
        assert bind is not None
        submitted = Submitted(
            id=f"{self._next_id:08x}",
            session=event.session_id,
            source=event.source_addr,
            destination=destination,
            data_coding=event.data_coding,
            esm_class=event.esm_class,
            at=datetime.now(UTC).isoformat(timespec="milliseconds"),
        )
        self._next_id += 1
        self.submitted.append(submitted)
        counters["smpp_accepted"] += 1
        if event.registered_delivery & 0x03:
            failed = bool(faults.receipt_failure_rate) and self.rng.random() < faults.receipt_failure_rate
            due = asyncio.get_running_loop().time() + self.receipt_delay_seconds
            self._receipts.append(_Receipt(due, bind.system_id, event.session_id, submitted, failed))
        if faults.latency_ms:
            self._spawn(self._accept_later(event, submitted.id, faults.latency_ms / 1000))
        else:
            event.accept(submitted.id)

    @staticmethod
    async def _accept_later(event: smpp34.SubmitSmEvent, message_id: str, seconds: float) -> None:
        await asyncio.sleep(seconds)
        event.accept(message_id)

    def _receivers(self, prefer: str | None) -> list[smpp34.Esme]:
        """Binds of the configured system_id that take deliver_sm, `prefer`'s session first."""
        found = [b for b in self._binds.values() if b.can_receive and b.system_id == self.system_id]
        found.sort(key=lambda b: b.session_id != prefer)
        return found

    # -- receipts ------------------------------------------------------------------------

    async def _send_receipts(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(TICK_SECONDS)
            now = loop.time()
            due = [r for r in self._receipts if r.at <= now]
            if due:
                self._receipts = [r for r in self._receipts if r.at > now]
                await asyncio.gather(*(self._send_receipt(r) for r in due))

    async def _send_receipt(self, receipt: _Receipt) -> None:
        submitted = receipt.submitted
        state = MESSAGE_STATE_UNDELIVERABLE if receipt.failed else MESSAGE_STATE_DELIVERED
        text = receipt_text(
            submitted.id, datetime.fromisoformat(submitted.at), datetime.now(UTC), failed=receipt.failed
        )
        taken = False
        for esme in self._receivers(receipt.session)[:1]:
            with contextlib.suppress(Exception):  # the bind went away under us: try again later
                answer = await esme.deliver_sm(
                    submitted.source,
                    text,
                    source_addr=submitted.destination,
                    source_addr_ton=1,
                    source_addr_npi=1,
                    esm_class=RECEIPT_ESM_CLASS,
                    tlvs=[
                        smpp34.Tlv(TLV_RECEIPTED_MESSAGE_ID, submitted.id.encode("ascii") + b"\0"),
                        smpp34.Tlv(TLV_MESSAGE_STATE, bytes([state])),
                    ],
                )
                taken = answer.is_success
        if taken:
            self.counters["smpp_receipts_undelivered" if receipt.failed else "smpp_receipts_delivered"] += 1
            return
        receipt.attempts += 1
        if receipt.attempts >= RECEIPT_MAX_ATTEMPTS:
            self.counters["smpp_receipts_given_up"] += 1
            return
        self.counters["smpp_receipts_retried"] += 1
        receipt.at = asyncio.get_running_loop().time() + RECEIPT_RETRY_SECONDS
        self._receipts.append(receipt)
