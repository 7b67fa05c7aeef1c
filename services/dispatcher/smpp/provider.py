"""`SmppProvider`: the dispatcher's `Provider` over SMPP 3.4 binds to one SMSC.

Each recipient's text is cut into exactly the parts it was billed for and submitted part
by part on one bind. What each outcome means:

- every part answered ESME_ROK: SENT, with each part's message_id in `carrier_ids`;
- throttled / queue full: that bind pauses (doubling) and the same part goes again;
- the SMSC refuses the first part (invalid destination: INVALID; anything else:
  TRANSIENT): nothing was sent, so a later attempt is safe;
- a part written but never answered (bind lost, response timer), or a later part refused
  after earlier ones were taken: UNKNOWN. An SMSC cannot deduplicate
  (`resends_are_safe = False`), so the dispatcher holds it instead of resending.
- credentials refused at bind time, or a status mapped to `no_credits`/`auth_error`:
  `ProviderAccountError`, which opens the circuit, unless some recipient of the same
  call was already submitted: then the others come back TRANSIENT (never lose what was
  sent) and the next call raises.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import random
import ssl
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass
from typing import Any

from services.dispatcher.carrier_reports import CarrierReportSink
from services.dispatcher.provider import Delivery, DeliveryStatus, OutboundBatch, ProviderAccountError
from services.dispatcher.settings import DispatcherSettings
from services.dispatcher.smpp.encoding import Concatenation, Part, encode_parts
from services.dispatcher.smpp.pdu import Command, Submit, SubmitTemplate
from services.dispatcher.smpp.reports import DeliverHandler
from services.dispatcher.smpp.session import BindRefused, NotSubmitted, OutcomeUnknown, Session, SessionConfig
from services.dispatcher.smpp.status import (
    Meaning,
    classify_bind,
    classify_submit,
    parse_status_map,
    status_name,
)
from shared.log import get_logger
from shared.provider_state import ProviderState

log = get_logger(__name__)

_MAX_THROTTLE_PAUSE = 30.0
_ONE_PART_TEMPLATES = 1024
"""One-part templates kept (`SmppProvider._message`): a few hundred KB at most."""


@dataclass(frozen=True, slots=True)
class SmppConfig:
    session: SessionConfig
    bind_mode: str
    binds: int
    registered_delivery: int
    concatenation: Concatenation
    gsm7_packed: bool
    status_map: dict[int, Meaning]
    throttle_backoff_seconds: float
    throttle_retries: int
    reconnect_max_seconds: float
    bind_wait_seconds: float
    inbound_reassembly_seconds: float
    unbind_grace_seconds: float
    service_type: str = ""

    @classmethod
    def from_settings(cls, s: DispatcherSettings) -> SmppConfig:
        tls: ssl.SSLContext | None = None
        if s.smpp_tls:
            tls = ssl.create_default_context(cafile=s.smpp_tls_ca_file)
        return cls(
            session=SessionConfig(
                host=s.smpp_host,
                port=s.smpp_port,
                system_id=s.smpp_system_id,
                password=s.smpp_password,
                system_type=s.smpp_system_type,
                window=s.smpp_window,
                submit_rate=s.smpp_submit_rate,
                enquire_link_seconds=s.smpp_enquire_link_seconds,
                response_timeout_seconds=s.smpp_response_timeout_seconds,
                tls=tls,
            ),
            bind_mode=s.smpp_bind_mode,
            binds=s.smpp_binds,
            registered_delivery=s.smpp_registered_delivery,
            concatenation=s.smpp_concatenation,
            gsm7_packed=s.smpp_gsm7_packed,
            status_map=parse_status_map(s.smpp_status_map),
            throttle_backoff_seconds=s.smpp_throttle_backoff_seconds,
            throttle_retries=s.smpp_throttle_retries,
            reconnect_max_seconds=s.smpp_reconnect_max_seconds,
            bind_wait_seconds=s.smpp_bind_wait_seconds,
            inbound_reassembly_seconds=s.smpp_inbound_reassembly_seconds,
            unbind_grace_seconds=s.smpp_unbind_grace_seconds,
        )


def source_address(sender: str) -> tuple[str, int, int]:
    """(address, TON, NPI): a numeric sender is international (1/1), anything else alphanumeric (5/0)."""
    digits = sender.removeprefix("+")
    if digits.isdigit():
        return digits, 1, 1
    return sender, 5, 0


def receipts_requested(registered_delivery: int) -> bool:
    """Whether an SMSC sends deliver_sm receipts for a submit_sm with this
    registered_delivery (SMPP 3.4 5.2.17): bits 0-1 ask for the final receipt (on success
    or failure, or on failure only), bit 4 for intermediate notifications."""
    return bool(registered_delivery & 0x13)


class _AccountRefused(Exception):
    def __init__(self, state: ProviderState, detail: str) -> None:
        self.state = state
        self.detail = detail


def _refusal(meaning: Meaning, detail: str) -> Delivery:
    """What the SMSC refusing a recipient's first part means (nothing of it was taken);
    raises `_AccountRefused` for the account-wide refusals."""
    if meaning is Meaning.INVALID:
        return Delivery(DeliveryStatus.INVALID, detail=detail)
    if meaning is Meaning.BLOCKED:
        return Delivery(DeliveryStatus.BLOCKED, detail=detail)
    if meaning is Meaning.AUTH_ERROR:
        raise _AccountRefused(ProviderState.AUTH_ERROR, detail)
    if meaning is Meaning.NO_CREDITS:
        raise _AccountRefused(ProviderState.NO_CREDITS, detail)
    return Delivery(DeliveryStatus.TRANSIENT, detail=detail)


class SmppProvider:
    resends_are_safe = False  # an SMSC has no idempotency reference: a second submit_sm is a second SMS

    def __init__(self, config: SmppConfig, sink: CarrierReportSink | None) -> None:
        self._config = config
        self._reports = DeliverHandler(sink, config.gsm7_packed, config.inbound_reassembly_seconds)
        self._sessions: list[Session | None] = []
        self._keepers: list[asyncio.Task[None]] = []
        self._bound = asyncio.Condition()
        self._account_error: ProviderAccountError | None = None
        self._refused_binds = 0
        self._references = itertools.count(random.randrange(0x10000))
        self._next_bind = itertools.count()
        self._closing = False
        self._receipts_expected = receipts_requested(config.registered_delivery)
        # (sender, text) -> its one-part template, read only once made (`_message`).
        self._one_part: dict[tuple[str, str], list[SubmitTemplate]] = {}

    # -- Provider ------------------------------------------------------------------------

    async def send(self, batches: Sequence[OutboundBatch]) -> list[list[Delivery]]:
        self.start()
        if self._account_error is not None:
            raise self._account_error
        refused: list[_AccountRefused] = []
        # One-part messages (the common case, single-recipient jobs and bulk alike) go
        # together, every batch's, without a task per recipient (`_send_one_part`); a
        # multipart one per recipient, its parts on one bind.
        one_part: list[tuple[SubmitTemplate, str]] = []
        one_part_at: list[tuple[int, int]] = []
        multipart: list[Coroutine[Any, Any, Delivery]] = []
        multipart_at: list[tuple[int, int]] = []
        for b, batch in enumerate(batches):
            # Encoded once a batch: every recipient gets the same parts, only the
            # destination differs (`pdu.SubmitTemplate`).
            message = self._message(batch.sender, batch.text)
            for r, recipient in enumerate(batch.recipients):
                if len(message) == 1:
                    one_part.append((message[0], recipient))
                    one_part_at.append((b, r))
                else:
                    multipart.append(self._send_recipient(message, recipient, refused))
                    multipart_at.append((b, r))
        out: list[list[Delivery | None]] = [[None] * len(batch.recipients) for batch in batches]
        if multipart:
            sent_one_part, *sent_multipart = await asyncio.gather(self._send_one_part(one_part, refused), *multipart)
        else:
            # Only one-part messages (the common case): no task and gather for one coroutine.
            sent_one_part, sent_multipart = await self._send_one_part(one_part, refused), []
        for (b, r), delivery in zip(one_part_at, sent_one_part, strict=True):
            out[b][r] = delivery
        for (b, r), delivery in zip(multipart_at, sent_multipart, strict=True):
            out[b][r] = delivery
        answers = [d for deliveries in out for d in deliveries if d is not None]
        if len(answers) != sum(len(b.recipients) for b in batches):
            raise RuntimeError("a recipient was left without a delivery")
        if refused:
            error = ProviderAccountError(refused[0].state, refused[0].detail)
            if all(d.status is DeliveryStatus.TRANSIENT for d in answers):
                raise error
            self._account_error = error  # the next call opens the circuit; what went out stays recorded
        return [[d for d in deliveries if d is not None] for deliveries in out]

    async def account_state(self) -> ProviderState:
        self.start()
        error, self._account_error = self._account_error, None
        if self._refused_binds:
            return ProviderState.AUTH_ERROR
        # Over SMPP the only check of credit is a submit: report it once, then let the
        # next send find out whether it is back.
        return error.state if error is not None else ProviderState.OK

    async def close(self) -> None:
        """Unbinds every session once its outstanding submits were answered (SIGTERM)."""
        self._closing = True
        for keeper in self._keepers:
            keeper.cancel()
        for keeper in self._keepers:
            with contextlib.suppress(asyncio.CancelledError):
                await keeper
        await asyncio.gather(
            *(s.unbind(self._config.unbind_grace_seconds) for s in self._sessions if s is not None),
            return_exceptions=True,
        )

    # -- binds ---------------------------------------------------------------------------

    def start(self) -> None:
        """Opens the binds (in the background, reconnecting with backoff); idempotent."""
        if self._keepers or self._closing:
            return
        if self._config.bind_mode == "transceiver":
            commands = [Command.BIND_TRANSCEIVER] * self._config.binds
        else:
            commands = [Command.BIND_TRANSMITTER, Command.BIND_RECEIVER] * self._config.binds
        self._sessions = [None] * len(commands)
        self._keepers = [
            asyncio.create_task(self._keep_bound(i, command), name=f"smpp-bind-{i}")
            for i, command in enumerate(commands)
        ]

    async def _keep_bound(self, index: int, command: Command) -> None:
        delay = 0.2
        refused = False
        name = f"{command.name.lower()}-{index}"
        while not self._closing:
            session = Session(self._config.session, command, self._reports.handle, name)
            try:
                await session.open()
            except BindRefused as exc:
                meaning = classify_bind(exc.status, self._config.status_map)
                if meaning in (Meaning.AUTH_ERROR, Meaning.NO_CREDITS):
                    if not refused:
                        refused = True
                        self._refused_binds += 1
                    state = ProviderState.AUTH_ERROR if meaning is Meaning.AUTH_ERROR else ProviderState.NO_CREDITS
                    self._account_error = ProviderAccountError(state, f"bind refused: {status_name(exc.status)}")
                    async with self._bound:
                        self._bound.notify_all()  # waiting sends learn of it now
                log.warning("smpp bind refused", bind=name, status=status_name(exc.status))
            except (OSError, TimeoutError, asyncio.IncompleteReadError) as exc:
                log.warning("smpp connect failed", bind=name, error=type(exc).__name__, retry_in=delay)
            else:
                if refused:
                    refused = False
                    self._refused_binds -= 1
                delay = 0.2
                log.info("smpp bound", bind=name)
                self._sessions[index] = session
                async with self._bound:
                    self._bound.notify_all()
                try:
                    await session.closed.wait()
                finally:
                    self._sessions[index] = None
                    if self._closing:
                        await session.unbind(self._config.unbind_grace_seconds)
                    else:
                        await session.close()
                continue
            await asyncio.sleep(delay * random.uniform(0.8, 1.2))
            delay = min(delay * 2, self._config.reconnect_max_seconds)

    def _pick(self, ready: list[Session]) -> Session:
        if len(ready) == 1:
            return ready[0]
        best = max(s.free_window for s in ready)
        candidates = [s for s in ready if s.free_window == best]
        return candidates[next(self._next_bind) % len(candidates)]

    async def _transmitters(self) -> list[Session]:
        """Every open transmitting bind, the freest first, or the one `_transmitter` waits for."""
        if not (self._account_error is not None and self._refused_binds):
            ready = [s for s in self._sessions if s is not None and s.can_submit and s.is_open]
            if len(ready) > 1:
                # The freest first (a lone submit goes there), turns taken among equals.
                turn = next(self._next_bind) % len(ready)
                return sorted(ready[turn:] + ready[:turn], key=lambda s: -s.free_window)
            if ready:
                return ready
        return [await self._transmitter()]

    async def _transmitter(self) -> Session:
        """The open transmitting bind with the most free window, waiting for one a while."""
        if not (self._account_error is not None and self._refused_binds):
            # The common case, without the condition's lock: a bind is open.
            ready = [s for s in self._sessions if s is not None and s.can_submit and s.is_open]
            if ready:
                return self._pick(ready)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._config.bind_wait_seconds
        async with self._bound:
            while True:
                if self._account_error is not None and self._refused_binds:
                    raise _AccountRefused(self._account_error.state, self._account_error.detail)
                ready = [s for s in self._sessions if s is not None and s.can_submit and s.is_open]
                if ready:
                    return self._pick(ready)
                remaining = deadline - loop.time()
                if remaining <= 0:
                    raise NotSubmitted("no SMSC bind available")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._bound.wait(), remaining)

    # -- one recipient -------------------------------------------------------------------

    def _message(self, sender: str, text: str) -> list[SubmitTemplate]:
        """One template per part. A multipart message has one concatenation reference for
        all its recipients: a reference only has to tell apart the concatenations in flight
        to one handset (3GPP TS 23.040 9.2.3.24.1), and each recipient is another handset.

        A one-part message has no reference, so its template is the same whenever the same
        sender sends the same text: kept for the next job (single-recipient jobs of one
        text, a notification sent one number at a time, were encoded once per recipient)."""
        known = self._one_part.get((sender, text))
        if known is not None:
            return known
        parts = encode_parts(
            text,
            concatenation=self._config.concatenation,
            gsm7_packed=self._config.gsm7_packed,
            reference=next(self._references),
        )
        source, ton, npi = source_address(sender)
        templates = [SubmitTemplate(self._submit_of(part, source, ton, npi)) for part in parts]
        if len(templates) == 1:
            if len(self._one_part) >= _ONE_PART_TEMPLATES:
                del self._one_part[next(iter(self._one_part))]  # the oldest
            self._one_part[(sender, text)] = templates
        return templates

    async def _send_one_part(
        self, submits: Sequence[tuple[SubmitTemplate, str]], refused: list[_AccountRefused]
    ) -> list[Delivery]:
        """One-part messages to their recipients: split over the open binds and submitted
        by each (`Session.submit_many`), with no task per recipient. What needs more than
        one submit (throttled, or not written because a bind went down) goes on
        `_send_recipient`'s way: the SMSC did not take it, so that is safe."""
        if not submits:
            return []
        try:
            sessions = await self._transmitters()
        except NotSubmitted as exc:
            return [Delivery(DeliveryStatus.TRANSIENT, detail=f"not submitted: {exc}")] * len(submits)
        except _AccountRefused as exc:
            refused.append(exc)
            detail = f"provider refused the account: {exc.detail}"
            return [Delivery(DeliveryStatus.TRANSIENT, detail=detail)] * len(submits)
        shares = [range(i, len(submits), len(sessions)) for i in range(len(sessions))]
        work = [
            session.submit_many([(submits[i][0], submits[i][1].removeprefix("+")) for i in share])
            for session, share in zip(sessions, shares, strict=True)
        ]
        # One bind (the common case): no task and gather for one coroutine.
        answered = [await work[0]] if len(work) == 1 else await asyncio.gather(*work)
        deliveries: list[Delivery | None] = [None] * len(submits)
        again: list[int] = []
        status_map = self._config.status_map
        receipts = self._receipts_expected
        for session, share, answers in zip(sessions, shares, answered, strict=True):
            for i, answer in zip(share, answers, strict=True):
                if isinstance(answer, NotSubmitted):
                    again.append(i)
                    continue
                if isinstance(answer, OutcomeUnknown):
                    deliveries[i] = self._unknown([], f"part 1 of 1: {answer}")
                    continue
                status, message_id = answer
                meaning = classify_submit(status, status_map)
                if meaning is Meaning.ACCEPTED:
                    deliveries[i] = Delivery(
                        DeliveryStatus.SENT,
                        provider_reference=message_id,
                        carrier_ids=(message_id,) if receipts else (),
                    )
                elif meaning is Meaning.THROTTLED:
                    session.pause(self._config.throttle_backoff_seconds)
                    again.append(i)
                else:
                    try:
                        deliveries[i] = _refusal(meaning, f"SMSC answered {status_name(status)}")
                    except _AccountRefused as exc:
                        refused.append(exc)
                        deliveries[i] = Delivery(
                            DeliveryStatus.TRANSIENT, detail=f"provider refused the account: {exc.detail}"
                        )
        if again:
            retried = await asyncio.gather(
                *(self._send_recipient([submits[i][0]], submits[i][1], refused) for i in again)
            )
            for i, delivery in zip(again, retried, strict=True):
                deliveries[i] = delivery
        done = [d for d in deliveries if d is not None]
        if len(done) != len(submits):
            raise RuntimeError("a recipient was left without a delivery")
        return done

    async def _send_recipient(
        self, parts: list[SubmitTemplate], recipient: str, refused: list[_AccountRefused]
    ) -> Delivery:
        try:
            return await self._submit_parts(parts, recipient.removeprefix("+"))
        except _AccountRefused as exc:
            refused.append(exc)
            return Delivery(DeliveryStatus.TRANSIENT, detail=f"provider refused the account: {exc.detail}")

    async def _submit_parts(self, parts: list[SubmitTemplate], destination: str) -> Delivery:
        carrier_ids: list[str] = []
        session: Session | None = None
        for number, submit in enumerate(parts, 1):
            sent_before = bool(carrier_ids)
            throttled = 0
            pause = self._config.throttle_backoff_seconds
            while True:
                try:
                    if session is None or not session.is_open:
                        if sent_before:
                            # Later parts go on the bind the first ones went on, or not at all.
                            return self._unknown(carrier_ids, f"bind lost before part {number} of {len(parts)}")
                        session = await self._transmitter()
                    status, message_id = await session.submit(submit, destination)
                except NotSubmitted as exc:
                    if sent_before:
                        return self._unknown(carrier_ids, f"part {number} of {len(parts)} not submitted: {exc}")
                    return Delivery(DeliveryStatus.TRANSIENT, detail=f"not submitted: {exc}")
                except OutcomeUnknown as exc:
                    return self._unknown(carrier_ids, f"part {number} of {len(parts)}: {exc}")
                meaning = classify_submit(status, self._config.status_map)
                if meaning is Meaning.ACCEPTED:
                    carrier_ids.append(message_id)
                    break
                if meaning is Meaning.THROTTLED and throttled < self._config.throttle_retries:
                    throttled += 1
                    session.pause(pause)
                    pause = min(pause * 2, _MAX_THROTTLE_PAUSE)
                    continue
                detail = f"SMSC answered {status_name(status)}"
                if sent_before:
                    return self._unknown(
                        carrier_ids, f"part {number} of {len(parts)} refused after earlier parts: {detail}"
                    )
                return _refusal(meaning, detail)
        # The parts' ids go on record for receipt matching only where receipts will come
        # (`Delivery.carrier_ids`): without registered_delivery none ever names them.
        return Delivery(
            DeliveryStatus.SENT,
            provider_reference=carrier_ids[-1],
            carrier_ids=tuple(carrier_ids) if self._receipts_expected else (),
        )

    def _submit_of(self, part: Part, source: str, ton: int, npi: int) -> Submit:
        return Submit(
            source_addr=source,
            source_ton=ton,
            source_npi=npi,
            destination_addr="",
            short_message=part.short_message,
            data_coding=part.data_coding,
            esm_class=part.esm_class,
            registered_delivery=self._config.registered_delivery,
            service_type=self._config.service_type,
            sar=part.sar,
        )

    @staticmethod
    def _unknown(carrier_ids: list[str], detail: str) -> Delivery:
        return Delivery(
            DeliveryStatus.UNKNOWN,
            provider_reference=carrier_ids[-1] if carrier_ids else None,
            detail=f"submit outcome unknown: {detail}",
            carrier_ids=tuple(carrier_ids),
        )
