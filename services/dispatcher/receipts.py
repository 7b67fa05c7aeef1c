"""Delivery receipts: matched to the recipient they are about, aggregated over its parts,
published as `ReceiptEvent`s. The dispatcher's handler of carrier receipts (inbound SMS go
to `inbound.py`; `carrier_reports.CarrierReports` hands each kind to its own).

When a recipient is sent, the dispatcher records what its receipts will name: each part's
carrier id → (message, project, recipient, part index, parts count, test) (`expect`). A
receipt (`receipt`) finds its part by carrier id, its status is stored with the other
parts' statuses of that recipient, and the recipient's delivery status is derived from all
of them (`next_delivery`, a plain function): delivered once every part is, failed as soon
as any part fails (the first failure stays: a recipient's final status never changes).
One `ReceiptEvent` is published per recipient and status change; its `event_id` is the
same whenever the same change is published again (a redelivered receipt, two dispatchers
racing on the parts of one recipient), so consumers drop the repeat.

A receipt can come before its part's carrier id is recorded (an SMSC may send deliver_sm
before the dispatcher has written down the submit_sm_resp). It is then published, as an
`UnmatchedReceipt`, to a delay queue that hands it back to the dispatcher a second later
(`rematch`): nothing sleeps holding it, and a crash loses nothing. After the grace period
it goes to `rsms.receipts.unmatched` for an operator (`rsms receipts unmatched`).

Every method returns only once what it produced is confirmed by the broker: the carrier
is acknowledged after that (deliver_sm_resp, HTTP 200), so a crash in between makes the
carrier send the receipt again rather than lose it.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal, Protocol

from services.dispatcher.carrier_reports import CarrierReceipt
from services.dispatcher.provider import Delivery, DeliveryStatus
from shared.contracts import Contract, ReceiptEvent, ReceiptStatus, SmsJob, UnmatchedReceipt
from shared.log import get_logger
from shared.topology import RECEIPTS_EXCHANGE, RECEIPTS_RETRY_QUEUE, RECEIPTS_UNMATCHED_QUEUE

log = get_logger(__name__)

_NAMESPACE = uuid.UUID("6b7f4a52-2f8e-4c1e-9d0b-3a5c2e71d9f4")

FAILURES: frozenset[ReceiptStatus] = frozenset({"undelivered", "expired", "rejected", "deleted"})
INTERMEDIATE: frozenset[ReceiptStatus] = frozenset({"accepted", "unknown"})
"""Not final: the carrier may still report delivered or a failure."""


def is_final(status: ReceiptStatus) -> bool:
    return status not in INTERMEDIATE


@dataclass(frozen=True, slots=True)
class SentPart:
    """One part of one recipient's SMS, as the carrier's receipts will name it."""

    message_id: uuid.UUID
    project: str
    recipient: str
    part: int
    """0-based index of the part."""
    parts: int
    test: bool


@dataclass(frozen=True, slots=True)
class PartReport:
    """What a receipt said about one part."""

    status: ReceiptStatus
    error_code: str | None
    occurred_at: datetime
    carrier_id: str


@dataclass(frozen=True, slots=True)
class RecipientState:
    """Everything known about one recipient's delivery: each part's latest report (a final
    one over an intermediate one) and the status last published."""

    reports: Mapping[int, PartReport]
    published: ReceiptStatus | None


def aggregate(parts: int, reports: Mapping[int, PartReport]) -> PartReport | None:
    """The recipient's delivery status from its parts' reports; None while nothing is known.

    A failure of any part fails the recipient (the earliest failure, then the lowest part);
    it is delivered when every part is, at the time the last one was; otherwise it takes the
    latest intermediate report (accepted, unknown), if there is one.
    """
    known = sorted(reports.items())
    failures = [(report.occurred_at, index, report) for index, report in known if report.status in FAILURES]
    if failures:
        return min(failures, key=lambda failure: (failure[0], failure[1]))[2]
    if all(index in reports and reports[index].status == "delivered" for index in range(parts)):
        return max((reports[index] for index in range(parts)), key=lambda report: report.occurred_at)
    intermediate = [report for _, report in known if report.status in INTERMEDIATE]
    if intermediate:
        return max(intermediate, key=lambda report: report.occurred_at)
    return None


def next_delivery(parts: int, state: RecipientState) -> PartReport | None:
    """What to publish for the recipient now, or None: no change since the last publish, or
    its status is final already (a final status never changes)."""
    if state.published is not None and is_final(state.published):
        return None
    current = aggregate(parts, state.reports)
    if current is None or current.status == state.published:
        return None
    return current


def receipt_event_id(message_id: uuid.UUID, recipient: str, status: ReceiptStatus) -> uuid.UUID:
    """Stable per recipient and status: the same change published twice is recognisable."""
    return uuid.uuid5(_NAMESPACE, f"receipt:{message_id}:{recipient}:{status}")


def sent_parts(job: SmsJob, recipients: Sequence[str], deliveries: Sequence[Delivery]) -> dict[str, SentPart]:
    """Carrier id → part, for every sent recipient whose carrier named its parts."""
    parts: dict[str, SentPart] = {}
    for recipient, delivery in zip(recipients, deliveries, strict=True):
        if delivery.status is not DeliveryStatus.SENT:
            continue
        count = len(delivery.carrier_ids)
        for index, carrier_id in enumerate(delivery.carrier_ids):
            parts[carrier_id] = SentPart(job.message_id, job.project, recipient, index, count, job.test)
    return parts


class ReceiptStore(Protocol):
    """Where parts and their reports are kept between a send and its receipts (Redis:
    `receipts_store.py`), shared by every dispatcher."""

    async def remember(self, parts: Mapping[str, SentPart]) -> None: ...

    async def find(self, carrier_id: str) -> SentPart | None: ...

    async def add_report(self, part: SentPart, report: PartReport) -> RecipientState:
        """Stores the part's report (a final report is never replaced) and returns the
        recipient's state after it, in one atomic step."""
        ...

    async def mark_published(self, part: SentPart, status: ReceiptStatus) -> None: ...


class Publisher(Protocol):
    """Publishes persistent and mandatory, returning once the broker confirmed (`Outbox`)."""

    async def publish(self, message: Contract, *, exchange: str = "", routing_key: str = "") -> None: ...


RematchOutcome = Literal["matched", "waiting", "unmatched"]


class ReceiptSink:
    """The dispatcher's handler of carrier receipts, and the recorder of what they will name."""

    def __init__(
        self, store: ReceiptStore, publisher: Publisher, match_grace_seconds: float, max_concurrent: int = 16
    ) -> None:
        self._store = store
        self._publisher = publisher
        self._grace = timedelta(seconds=match_grace_seconds)
        # A carrier can hand over a thousand receipts at once; each takes Redis connections
        # from the pool the jobs use, so only this many are worked on together.
        self._slots = asyncio.Semaphore(max_concurrent)

    async def expect(self, job: SmsJob, recipients: Sequence[str], deliveries: Sequence[Delivery]) -> None:
        """Records the carrier ids of the sent recipients; call before the send markers, so
        a recipient marked sent always has its parts on record."""
        parts = sent_parts(job, recipients, deliveries)
        if parts:
            await self._store.remember(parts)

    async def expect_many(self, sent: Sequence[tuple[SmsJob, Sequence[str], Sequence[Delivery]]]) -> None:
        """`expect` for several jobs' batches, (job, recipients, deliveries) each, in one write."""
        parts: dict[str, SentPart] = {}
        for job, recipients, deliveries in sent:
            parts.update(sent_parts(job, recipients, deliveries))
        if parts:
            await self._store.remember(parts)

    async def receipt(self, receipt: CarrierReceipt) -> None:
        async with self._slots:
            await self._receipt(receipt)

    async def _receipt(self, receipt: CarrierReceipt) -> None:
        part = await self._store.find(receipt.carrier_id)
        if part is None:
            await self._publisher.publish(
                _unmatched(receipt, "no sent part with this carrier id (yet)"),
                routing_key=RECEIPTS_RETRY_QUEUE.name,
            )
            log.info("receipt waiting for its part", carrier_id=receipt.carrier_id, status=receipt.status)
            return
        await self._settle(
            part, receipt.carrier_id, receipt.status, receipt.error_code, receipt.done_at, receipt.received_at
        )

    async def rematch(self, waiting: UnmatchedReceipt, now: datetime | None = None) -> RematchOutcome:
        """A receipt back from the delay queue: matched now, sent round again, or, after the
        grace period, kept for an operator."""
        async with self._slots:
            return await self._rematch(waiting, now)

    async def _rematch(self, waiting: UnmatchedReceipt, now: datetime | None) -> RematchOutcome:
        part = await self._store.find(waiting.provider_reference)
        if part is not None:
            await self._settle(
                part,
                waiting.provider_reference,
                waiting.status,
                waiting.error_code,
                waiting.occurred_at,
                waiting.received_at,
            )
            return "matched"
        if (now or datetime.now(UTC)) - waiting.received_at < self._grace:
            await self._publisher.publish(waiting, routing_key=RECEIPTS_RETRY_QUEUE.name)
            return "waiting"
        kept = waiting.model_copy(
            update={"reason": f"no sent part with this carrier id after {self._grace.total_seconds():g} s"}
        )
        await self._publisher.publish(kept, routing_key=RECEIPTS_UNMATCHED_QUEUE.name)
        log.warning("receipt unmatched", carrier_id=waiting.provider_reference, status=waiting.status)
        return "unmatched"

    async def retry_later(self, waiting: UnmatchedReceipt) -> None:
        """Back to the delay queue whatever its age (the store could not be asked)."""
        await self._publisher.publish(waiting, routing_key=RECEIPTS_RETRY_QUEUE.name)

    async def _settle(
        self,
        part: SentPart,
        carrier_id: str,
        status: ReceiptStatus,
        error_code: str | None,
        done_at: datetime | None,
        received_at: datetime,
    ) -> None:
        report = PartReport(status, error_code, done_at or received_at, carrier_id)
        state = await self._store.add_report(part, report)
        delivery = next_delivery(part.parts, state)
        if delivery is None:
            return
        await self._publisher.publish(
            ReceiptEvent(
                event_id=receipt_event_id(part.message_id, part.recipient, delivery.status),
                message_id=part.message_id,
                project=part.project,
                recipient=part.recipient,
                status=delivery.status,
                final=is_final(delivery.status),
                error_code=delivery.error_code,
                provider_reference=delivery.carrier_id,
                occurred_at=delivery.occurred_at,
                received_at=received_at,
                test=part.test,
            ),
            exchange=RECEIPTS_EXCHANGE.name,
        )
        await self._store.mark_published(part, delivery.status)
        log.debug("receipt published", message_id=str(part.message_id), status=delivery.status)


def _unmatched(receipt: CarrierReceipt, reason: str) -> UnmatchedReceipt:
    return UnmatchedReceipt(
        event_id=uuid.uuid5(_NAMESPACE, f"unmatched:{receipt.carrier_id}:{receipt.status}"),
        provider_reference=receipt.carrier_id,
        status=receipt.status,
        error_code=receipt.error_code,
        received_at=receipt.received_at,
        occurred_at=receipt.done_at,
        reason=reason,
    )
