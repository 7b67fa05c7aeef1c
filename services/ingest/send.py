"""Accepting a send request: the checks in the contract's order, then one confirmed publish.

Order of answers (the first that applies wins): 413 body too large → 401 key → 403
suspended project → 403 IP → 429 limits → 400 payload → 400 tag → 400 blocked recipient →
500 provider down → queued.
The body is parsed before the limits are asked (it costs no I/O), so that one Redis round
trip can carry the rate-limit script, the blocklist lookup and the provider state; the
answers are still given in the order above.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

import msgspec
from redis.asyncio.client import Pipeline
from redis.exceptions import RedisError

from services.ingest.access import AccessControl
from services.ingest.account_store import Caller
from services.ingest.idempotency import IdempotencyStore, StoredResponse, fingerprint
from services.ingest.pricing import PriceTable
from services.ingest.publisher import JobPublisher
from services.ingest.ratelimit import RateDecision, RateLimiter
from services.ingest.schemas import SendResponse, SendResult
from services.ingest.validation import SendRequest, parse_send_request
from shared.blocklist import BLOCKLIST_KEY
from shared.contracts import SmsJob
from shared.errors import ErrorCode, GatewayError
from shared.log import get_logger
from shared.money import format_money
from shared.provider_state import PROVIDER_STATE_KEY, ProviderState
from shared.segments import count_segments

log = get_logger(__name__)

REDIS_UNAVAILABLE = "Rate limiting is unavailable (Redis unreachable); nothing was queued. Retry shortly"
_encode = msgspec.json.Encoder().encode


class RateLimited(GatewayError):
    """Over a limit; carries the decision so the answer can show the limit's headers."""

    def __init__(self, decision: RateDecision) -> None:
        super().__init__(
            ErrorCode.RATE_LIMIT_EXCEEDED,
            f"Rate limit exceeded. Try again in {decision.retry_after} seconds",
            retry_after=decision.retry_after,
        )
        self.decision = decision


@dataclass(frozen=True, slots=True)
class Admission:
    decision: RateDecision
    blocked: list[str]
    provider_state: ProviderState


class SendService:
    def __init__(
        self,
        *,
        access: AccessControl,
        limiter: RateLimiter,
        idempotency: IdempotencyStore,
        publisher: JobPublisher,
        prices: PriceTable,
    ) -> None:
        self._access = access
        self._limiter = limiter
        self._idempotency = idempotency
        self._publisher = publisher
        self._prices = prices

    @property
    def access(self) -> AccessControl:
        return self._access

    async def admit(self, caller: Caller, request: SendRequest | None) -> Admission:
        """Count the request against its limits, in one round trip with the lookups that
        the later checks need. Raises `RateLimited` (with the decision) over a limit."""
        tag = request.tag if request and self._tag_sender(caller, request.tag) else None

        def fill(pipe: Pipeline) -> str:
            slot = self._limiter.acquire(
                pipe,
                caller.key.id,
                f"{caller.project_id}:{tag}" if tag else None,
                self._access.limits_for(caller.project),
            )
            if request is not None and tag is not None:
                pipe.smismember(BLOCKLIST_KEY, request.recipients)
            pipe.get(PROVIDER_STATE_KEY)
            return slot

        try:
            slot, results = await self._limiter.round_trip(fill)
        except RedisError as exc:
            raise GatewayError(ErrorCode.INTERNAL_ERROR, REDIS_UNAVAILABLE, retry_after=1) from exc
        decision = self._limiter.decision(results[0], slot)
        if not decision.admitted:
            raise RateLimited(decision)
        blocked: list[str] = []
        if request is not None and tag is not None:
            blocked = [n for n, hit in zip(request.recipients, results[1], strict=True) if hit]
        state = results[-1]
        provider_state = ProviderState(state.decode()) if state else ProviderState.OK
        return Admission(decision, blocked, provider_state)

    async def usage(self, caller: Caller) -> RateDecision:
        """The key's current usage, counting nothing: for the headers of early refusals."""
        limits = self._access.limits_for(caller.project)

        def fill(pipe: Pipeline) -> str:
            return self._limiter.peek(pipe, caller.key.id, limits)

        try:
            slot, results = await self._limiter.round_trip(fill)
        except RedisError:
            return RateDecision.untracked(limits.requests_per_minute)
        return self._limiter.decision(results[0], slot)

    async def release(self, caller: Caller, decision: RateDecision) -> None:
        try:
            await self._limiter.release(caller.key.id, decision.slot)
        except RedisError:
            # The slot expires by itself; losing the release costs a little headroom only.
            log.warning("concurrency_slot_release_failed", key_id=caller.key.id)

    async def accept(
        self, caller: Caller, request: SendRequest, admission: Admission, idempotency_key: str | None
    ) -> StoredResponse:
        sender = self._tag_sender(caller, request.tag)
        if sender is None:
            raise GatewayError(ErrorCode.INVALID_TAG, f"Tag '{request.tag}' not found or inactive")
        if admission.blocked:
            raise GatewayError(
                ErrorCode.RECIPIENT_BLOCKED,
                f"{len(admission.blocked)} recipient(s) blocked by the SMS provider",
                details=[f"recipients: {number} is blocked" for number in admission.blocked],
            )
        provider_error = admission.provider_state.error_code
        if provider_error is not None and not caller.test:
            raise GatewayError(provider_error)

        if idempotency_key is None:
            return await self._queue(caller, request, sender)
        IdempotencyStore.check_key(idempotency_key)
        request_print = fingerprint(request.tag, request.recipients, request.message)
        try:
            earlier = await self._idempotency.claim(caller.project_id, idempotency_key, request_print)
            if earlier is not None:
                return earlier
            try:
                response = await self._queue(caller, request, sender)
            except BaseException:
                await self._idempotency.release(caller.project_id, idempotency_key)
                raise
            await self._idempotency.complete(caller.project_id, idempotency_key, request_print, response)
        except RedisError as exc:
            raise GatewayError(ErrorCode.INTERNAL_ERROR, REDIS_UNAVAILABLE, retry_after=1) from exc
        return response

    async def _queue(self, caller: Caller, request: SendRequest, sender: str) -> StoredResponse:
        count = count_segments(request.message)
        cost = self._prices.estimate(request.recipients, count.segments)
        accepted_at = datetime.now(UTC)
        job = SmsJob(
            message_id=uuid.uuid4(),
            project=caller.project_id,
            key_id=caller.key.id,
            tag=request.tag,
            sender=sender,
            recipients=request.recipients,
            message=request.message,
            encoding=count.encoding,
            segments=count.segments,
            prices=self._prices.prices_applied(),
            default_price=self._prices.default,
            currency=self._prices.currency,
            estimated_cost=cost,
            test=caller.test,
            store_body=caller.project.store_bodies,
            accepted_at=accepted_at,
        )
        await self._publisher.publish(job)
        log.info(
            "sms_accepted",
            message_id=str(job.message_id),
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
                message_id=str(job.message_id),
                recipient_count=len(job.recipients),
                sms_segments_per_recipient=count.segments,
                total_sms_segments=count.segments * len(job.recipients),
                estimated_cost=format_money(cost, self._prices.currency),
                status="queued",
                timestamp=accepted_at.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            ),
        )
        return StoredResponse(200, _encode(body))

    @staticmethod
    def _tag_sender(caller: Caller, tag: str) -> str | None:
        record = caller.project.tags.get(tag)
        return record.sender if record is not None and record.active else None


def parse_or_error(body: bytes) -> tuple[SendRequest | None, GatewayError | None]:
    try:
        return parse_send_request(body), None
    except GatewayError as exc:
        return None, exc
