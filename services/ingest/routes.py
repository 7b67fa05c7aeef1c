"""The public API's route handlers: thin, each hands the request to the logic behind it."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Annotated, Any, TypeVar

import msgspec
from litestar import MediaType, Request, Response, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath, QueryParameter
from redis.exceptions import RedisError

from services.ingest.accepted import AcceptedMessages
from services.ingest.access import AccessControl
from services.ingest.account_store import Caller
from services.ingest.admission import Admission, RateLimited
from services.ingest.errors import observe
from services.ingest.http_limits import declared_too_large, receive_send_request, too_large
from services.ingest.metrics import IngestMetrics
from services.ingest.number_policy import NumberPolicy
from services.ingest.openapi import (
    SEND_ERRORS,
    STATUS_ERRORS,
    USAGE_ERRORS,
    SendOperation,
    StatusOperation,
    UsageOperation,
)
from services.ingest.schemas import MessageStatusResponse, SendResponse, UsageResponse
from services.ingest.send import SendService
from services.ingest.validation import SendRequest
from shared.errors import ErrorCode, GatewayError
from shared.ledger_queries import (
    LedgerQueries,
    message_status_body,
    parse_usage_params,
    usage_body,
)

AnyRequest = Request[Any, Any, Any]
Body = TypeVar("Body")

REDIS_UNAVAILABLE_FOR_READS = "Message status is unavailable (Redis unreachable). Retry shortly"


async def identify(
    request: AnyRequest, access: AccessControl, send_service: SendService, *, read: bool = False
) -> Caller:
    """The key, project and IP checks every API endpoint starts with."""
    request.state.started = time.perf_counter()
    caller = access.authenticate(request)
    try:
        access.check_ip(request, caller)
    except GatewayError:
        request.state.rate_decision = await send_service.usage(caller, read=read)
        raise
    return caller


@post(
    "/api/v1/sms/send",
    summary="Send SMS",
    operation_id="sendSms",
    description="Queue one message to 1-1000 recipients. Answers only after the job is durably queued.",
    operation_class=SendOperation,
    responses=SEND_ERRORS,
    tags=["SMS"],
    status_code=200,
)
async def send_sms(request: AnyRequest) -> Response[SendResponse]:
    # The send service from the app's state (where the lifespan put it), not through
    # Litestar's DI: resolving even one dependency per request cost the hot path ~3% of its
    # CPU (two or more: an anyio task group a request, ~4% more).
    state = request.app.state
    send_service: SendService = state.send_service
    if declared_too_large(request.headers.get("content-length"), state.max_body_bytes):
        raise too_large(state.max_body_bytes)
    # The key from the headers first: a request without one is answered before its body is
    # read, so nobody without a key can hold a connection open by sending it slowly.
    caller = await identify(request, send_service.access, send_service)
    parsed, invalid = await receive_send_request(
        request, state.max_body_bytes, state.body_timeout_seconds, NumberPolicy.of(caller.project)
    )
    async with admitted(request, send_service, caller, parsed) as admission:
        if invalid is not None:
            raise invalid
        stored = await send_service.accept(caller, admission, request.headers.get("idempotency-key"))
    metrics: IngestMetrics = request.app.state.metrics
    label = "yes" if caller.test else "no"
    assert parsed is not None
    metrics.accepted_recipients.labels(caller.project_id, label).inc(len(parsed.recipients))
    observe(request, "OK")
    return Response(
        # Encoded once (and replayed as is for an Idempotency-Key): the bytes of a SendResponse.
        content=stored.body,  # type: ignore[arg-type]
        status_code=stored.status,
        media_type=MediaType.JSON,
        headers=admission.rate.headers(),
    )


@asynccontextmanager
async def admitted(
    request: AnyRequest,
    send_service: SendService,
    caller: Caller,
    parsed: SendRequest | None = None,
    *,
    read: bool = False,
) -> AsyncIterator[Admission]:
    """The admission bracket: count the request against its limits (a read against the
    key's read limit), then, however the request ends, give back what it holds (its
    concurrency slot, an unused spend)."""
    try:
        admission = await (send_service.admit_read(caller) if read else send_service.admit(caller, parsed))
    except RateLimited as exc:
        request.state.rate_decision = exc.decision
        raise
    request.state.rate_decision = admission.rate
    try:
        yield admission
    finally:
        await send_service.release(admission)


async def _answer_read(
    request: AnyRequest,
    access: AccessControl,
    send_service: SendService,
    read: Callable[[Caller], Awaitable[Body]],
) -> Response[Body]:
    """Reads pass the same key and IP checks as sends, and count against the key's read
    limit (its own, so polling a status never takes a send's place)."""
    request.state.read = True  # the rate-limit headers of any answer describe the read window
    caller = await identify(request, access, send_service, read=True)
    async with admitted(request, send_service, caller, read=True) as admission:
        body = await read(caller)
    observe(request, "OK")
    return Response(body, media_type=MediaType.JSON, headers=admission.rate.headers())


@get(
    "/api/v1/sms/{messageId:str}",
    summary="Message status",
    operation_id="getMessageStatus",
    description="Per-recipient delivery status of a message sent with this key's project, from the moment "
    "the send answered 200 (`queued` until the dispatcher takes it). An unknown id and another project's id "
    "both answer 404. Reads have a rate limit of their own (600 per minute per key by default).",
    operation_class=StatusOperation,
    responses=STATUS_ERRORS,
    tags=["SMS"],
)
async def message_status(
    request: AnyRequest,
    messageId: FromPath[str],  # the contract's name for it
    access: NamedDependency[AccessControl],
    send_service: NamedDependency[SendService],
    ledger: NamedDependency[LedgerQueries],
    accepted: NamedDependency[AcceptedMessages],
) -> Response[MessageStatusResponse]:
    async def read(caller: Caller) -> MessageStatusResponse:
        try:
            parsed = uuid.UUID(messageId)
        except ValueError:
            raise GatewayError(
                ErrorCode.VALIDATION_ERROR, details=[f"messageId: not a UUID: '{messageId[:40]}'"]
            ) from None
        report = await ledger.message_status(caller.project_id, parsed)
        if not report.found:
            # Accepted a moment ago and not yet recorded by the ledger: queued, as its 200 said.
            try:
                report = await accepted.find(caller.project_id, parsed) or report
            except RedisError as exc:
                raise GatewayError(ErrorCode.INTERNAL_ERROR, REDIS_UNAVAILABLE_FOR_READS, retry_after=1) from exc
        return msgspec.convert(message_status_body(report), MessageStatusResponse)

    return await _answer_read(request, access, send_service, read)


@get(
    "/api/v1/usage",
    summary="Usage",
    operation_id="getUsage",
    description="Billed usage of this key's project: sent recipients, segments and cost, by day, tag or "
    "country, for whole UTC days `from`..`to` (inclusive, YYYY-MM-DD). Reads have a rate limit of their own "
    "(600 per minute per key by default).",
    operation_class=UsageOperation,
    responses=USAGE_ERRORS,
    tags=["Billing"],
)
async def usage(
    request: AnyRequest,
    access: NamedDependency[AccessControl],
    send_service: NamedDependency[SendService],
    ledger: NamedDependency[LedgerQueries],
    date_from: Annotated[str | None, QueryParameter(name="from", description="First day, YYYY-MM-DD")] = None,
    date_to: Annotated[str | None, QueryParameter(name="to", description="Last day, YYYY-MM-DD")] = None,
    group_by: Annotated[str, QueryParameter(name="groupBy", description="day, tag or country")] = "day",
) -> Response[UsageResponse]:
    async def read(caller: Caller) -> UsageResponse:
        params = parse_usage_params(date_from, date_to, group_by)
        report = await ledger.usage(caller.project_id, params.date_from, params.date_to, params.group_by)
        return msgspec.convert(usage_body(report, params, send_service.currency), UsageResponse)

    return await _answer_read(request, access, send_service, read)
