"""Accepting a send request: the admission rules, then one confirmed publish.

The order of answers is in `admission.py`, whose plain functions make every decision; this
module does the I/O around them. The body is parsed before the limits are asked (it costs
no I/O), so that one Redis round trip can carry the limits, the spend cap, the blocklist
and opt-out lookups and the provider state; the answers are still given in the contract's order.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import msgspec
from redis.exceptions import RedisError

from services.ingest.accepted import AcceptedMessages
from services.ingest.accepted_job import AcceptedJob
from services.ingest.access import AccessControl
from services.ingest.account_store import Caller
from services.ingest.admission import Admission, Caps, SendPlan, check_rate, send_refusal
from services.ingest.idempotency import IdempotencyStore, StoredResponse, check_key, fingerprint
from services.ingest.pricing import PriceTable
from services.ingest.publisher import JobPublisher
from services.ingest.ratelimit import AdmissionAnswers, AdmissionQuery, RateDecision, RateLimiter, SpendQuery
from services.ingest.schemas import SendResponse, SendResult
from services.ingest.validation import SendRequest
from shared.accounts import Project
from shared.errors import ErrorCode, GatewayError
from shared.log import get_logger
from shared.money import format_money
from shared.segments import count_segments

log = get_logger(__name__)

REDIS_UNAVAILABLE = "Rate limiting is unavailable (Redis unreachable); nothing was queued. Retry shortly"
_encode = msgspec.json.Encoder().encode


def caps_of(project: Project) -> Caps:
    return Caps(project.limits.segments_per_message, project.limits.daily_spend_cap)


class SendService:
    def __init__(
        self,
        *,
        access: AccessControl,
        limiter: RateLimiter,
        idempotency: IdempotencyStore,
        publisher: JobPublisher,
        prices: PriceTable,
        accepted: AcceptedMessages,
    ) -> None:
        self._access = access
        self._limiter = limiter
        self._idempotency = idempotency
        self._publisher = publisher
        self._prices = prices
        self._accepted = accepted

    @property
    def currency(self) -> str:
        """The gateway's currency: what an amount with no rows behind it is in."""
        return self._prices.currency

    @property
    def access(self) -> AccessControl:
        return self._access

    async def admit(self, caller: Caller, request: SendRequest | None) -> Admission:
        """Count the request against its limits (a request without a valid body too), in
        one round trip with the lookups the later checks need. Raises `RateLimited` (with
        the decision) over a limit; the caller must `release` what it returns."""
        plan = self._plan(caller, request) if request is not None else None
        caps = caps_of(caller.project)
        tag = plan.tag if plan is not None and plan.sender is not None else None
        reserve_spend = (
            plan is not None
            and tag is not None
            and caps.daily_spend is not None
            and not caller.test  # test sends are never billed
            and plan.within_segment_cap(caps)
        )
        query = AdmissionQuery(
            key_id=caller.key.id,
            limits=self._access.limits_for(caller.project),
            tag=f"{caller.project_id}:{tag}" if tag else None,
            recipients=plan.recipients if plan is not None and tag is not None else (),
            project=caller.project_id,
            spend=SpendQuery(caller.project_id, plan.cost, caps.daily_spend)
            if reserve_spend and plan is not None and caps.daily_spend is not None
            else None,
        )
        return Admission(await self._count(query), plan)

    async def admit_read(self, caller: Caller) -> Admission:
        """Count a status or usage read against the key's read limit (not its send limit);
        like `admit`, raises `RateLimited`, and the caller must `release` what it returns."""
        limits = self._access.limits_for(caller.project)
        return Admission(
            await self._count(AdmissionQuery(key_id=caller.key.id, limits=limits, project=caller.project_id, read=True))
        )

    async def _count(self, query: AdmissionQuery) -> AdmissionAnswers:
        try:
            answers = await self._limiter.admit(query)
        except RedisError as exc:
            raise GatewayError(ErrorCode.INTERNAL_ERROR, REDIS_UNAVAILABLE, retry_after=1) from exc
        check_rate(answers.rate)
        return answers

    async def usage(self, caller: Caller, *, read: bool = False) -> RateDecision:
        """The key's current usage (of its read window when `read`), counting nothing: for
        the headers of early refusals."""
        limits = self._access.limits_for(caller.project)
        try:
            return await self._limiter.peek(caller.project_id, caller.key.id, limits, read=read)
        except RedisError:
            return RateDecision.untracked(limits.reads_per_minute if read else limits.requests_per_minute)

    async def release(self, admission: Admission) -> None:
        try:
            await self._limiter.release(admission.to_release())
        except RedisError:
            # The slot expires by itself; an unreturned spend reservation counts against
            # the cap until the day ends (it errs on the side of sending less); without its
            # status record, a queued message reads as not found until the ledger has it.
            log.warning("admission_release_failed", key_id=admission.answers.reservation.key_id)

    async def accept(self, caller: Caller, admission: Admission, idempotency_key: str | None) -> StoredResponse:
        """Queue the admitted request, or raise why not. Answers 200 once the broker has
        confirmed the job, whatever Redis does afterwards."""
        plan = admission.plan
        assert plan is not None, "accept() needs a request that parsed"
        refusal = send_refusal(plan, admission.answers, caps_of(caller.project), test=caller.test)
        if refusal is not None:
            raise refusal
        if idempotency_key is None:
            return await self._queue(caller, plan, admission)

        check_key(idempotency_key)
        kind = caller.key.kind
        request_print = fingerprint(plan.tag, plan.recipients, plan.message)
        try:
            earlier = await self._idempotency.claim(caller.project_id, kind, idempotency_key, request_print)
        except RedisError as exc:
            raise GatewayError(ErrorCode.INTERNAL_ERROR, REDIS_UNAVAILABLE, retry_after=1) from exc
        if isinstance(earlier, StoredResponse):
            return earlier
        try:
            response = await self._queue(caller, plan, admission, earlier)
        except BaseException:
            try:
                await self._idempotency.let_go(caller.project_id, kind, idempotency_key, request_print, earlier)
            except RedisError:
                log.warning("idempotency_claim_release_failed", project=caller.project_id)
            raise
        # Published and confirmed: from here on the answer is the response, whatever Redis does.
        await self._idempotency.complete(caller.project_id, kind, idempotency_key, request_print, response)
        return response

    def _plan(self, caller: Caller, request: SendRequest) -> SendPlan:
        segments = count_segments(request.message)
        record = caller.project.tags.get(request.tag)
        quote = self._prices.quote(request.recipients, segments.segments)
        return SendPlan(
            tag=request.tag,
            sender=record.sender if record is not None and record.active else None,
            recipients=request.recipients,
            segments=segments,
            cost=quote.cost,
            currency=self._prices.currency,
            prices=quote.prices,
            message=request.message,
        )

    async def _queue(
        self, caller: Caller, plan: SendPlan, admission: Admission, message_id: uuid.UUID | None = None
    ) -> StoredResponse:
        """Publish the job (under `message_id`, an Idempotency-Key's claim's, else a new one)."""
        assert plan.sender is not None
        accepted_at = datetime.now(UTC)
        job = AcceptedJob(
            message_id=message_id or uuid.uuid4(),
            project=caller.project_id,
            key_id=caller.key.id,
            tag=plan.tag,
            sender=plan.sender,
            recipients=plan.recipients,
            message=plan.message,
            encoding=plan.segments.encoding,
            segments=plan.segments.segments,
            prices=plan.prices,
            default_price=self._prices.default,
            currency=self._prices.currency,
            estimated_cost=plan.cost,
            test=caller.test,
            store_body=caller.project.store_bodies,
            accepted_at=accepted_at,
        )
        await self._publisher.publish(job)
        message_id_text = str(job.message_id)
        admission.keep_spend()
        # Written with the release, before the 200 is sent: a status read right after the
        # 200 finds the message even before the ledger has recorded it.
        admission.leave(self._accepted.write_of(job))
        log.info(
            "sms_accepted",
            message_id=message_id_text,
            project=job.project,
            key_id=job.key_id,
            tag=job.tag,
            recipients=len(job.recipients),
            segments=job.segments,
            encoding=job.encoding,
            test=job.test,
        )
        body = SendResponse(
            success=True,
            data=SendResult(
                message_id=message_id_text,
                recipient_count=len(job.recipients),
                sms_segments_per_recipient=plan.segments.segments,
                total_sms_segments=plan.segments.segments * len(job.recipients),
                estimated_cost=format_money(plan.cost, self._prices.currency),
                status="queued",
                timestamp=accepted_at.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            ),
        )
        return StoredResponse(200, _encode(body))
