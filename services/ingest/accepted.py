"""Read after write: what ingest remembers of an accepted message until the ledger has it.

The ledger records a message a moment after ingest answered 200 (0.3-0.9 s measured; longer
while the ledger is behind or restarting), and until then it says "not found". So that
`GET /api/v1/sms/{messageId}` answers the message from the moment its 200 was sent, ingest
writes a small record of it to Redis before answering: the request as accepted. It goes
in the round trip that releases the request's concurrency slot (a group commit every
request makes anyway), so it costs a send no round trip of its own. While the ledger
does not know the message, the status route answers from this record, every recipient
`queued`, exactly as the ledger reports a message no dispatcher has touched yet.

Records are scoped by project, like everything a key can read, and expire after
`RSMS_ACCEPTED_STATUS_TTL_SECONDS`; the ledger's answer wins whenever it has one.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from uuid import UUID

import msgspec

from services.ingest.accepted_job import AcceptedJob
from services.ingest.ratelimit import KeyWrite
from shared.contracts import MessageStatusReport, RecipientStatusRow
from shared.countries import country_of
from shared.redis_connection import RedisClient


class AcceptedRecord(msgspec.Struct, frozen=True):
    """The accepted request, as much as its status needs: no message body, no key."""

    tag: str
    sender: str
    recipients: list[str]
    segments: int
    estimated_cost: Decimal
    currency: str
    test: bool
    accepted_at: datetime


_encode = msgspec.json.Encoder(decimal_format="string").encode
_decode = msgspec.json.Decoder(AcceptedRecord).decode


def record_of(job: AcceptedJob) -> AcceptedRecord:
    return AcceptedRecord(
        tag=job.tag,
        sender=job.sender,
        recipients=job.recipients,
        segments=job.segments,
        estimated_cost=job.estimated_cost,
        currency=job.currency,
        test=job.test,
        accepted_at=job.accepted_at,
    )


def queued_report(project: str, message_id: UUID, record: AcceptedRecord) -> MessageStatusReport:
    """The report the ledger gives for this message before any recipient was attempted."""
    return MessageStatusReport(
        found=True,
        message_id=message_id,
        project=project,
        tag=record.tag,
        sender=record.sender,
        recipient_count=len(record.recipients),
        segments_per_recipient=record.segments,
        estimated_cost=record.estimated_cost,
        cost=Decimal(0),
        currency=record.currency,
        test=record.test,
        accepted_at=record.accepted_at,
        recipients=[
            RecipientStatusRow(
                recipient=number,
                country=country_of(number),
                status="queued",
                segments=record.segments,
                cost=Decimal(0),
                attempt=0,
            )
            for number in sorted(record.recipients)
        ],
    )


class AcceptedMessages:
    def __init__(self, redis: RedisClient, *, ttl_seconds: int, prefix: str = "rsms:accepted") -> None:
        self._redis = redis
        self._ttl = ttl_seconds
        self._prefix = prefix

    def write_of(self, job: AcceptedJob) -> KeyWrite:
        """The Redis write that remembers `job`, to send with the request's other writes.
        If it fails, the job is queued all the same; its status is then only missing until
        the ledger has it."""
        return KeyWrite(self._name(job.project, job.message_id), _encode(record_of(job)), self._ttl)

    async def find(self, project: str, message_id: UUID) -> MessageStatusReport | None:
        """The queued report of an accepted message of `project`; None when there is no record.
        Raises RedisError when Redis fails."""
        raw = await self._redis.get(self._name(project, message_id))
        return queued_report(project, message_id, _decode(raw)) if raw is not None else None

    def _name(self, project: str, message_id: UUID) -> str:
        return f"{self._prefix}:{project}:{message_id}"
