"""The public API's route handlers: thin, each hands the request to the logic behind it."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, TypeVar

import msgspec
from litestar import MediaType, Request, Response, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath, QueryParameter
from redis.exceptions import RedisError

from services.ingest.accepted import AcceptedMessages
from services.ingest.account_store import Caller
from services.ingest.entry_checks import RequestProgress, admitted, identify
from services.ingest.errors import UNMATCHED, Outcomes, as_response
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
from services.ingest.send_endpoint import RequestHeaders, SendEndpoint
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
    """The send endpoint as the OpenAPI document describes it. The app hands a POST to
    exactly this path to `SendEndpoint` before Litestar routes it (`asgi_entry.py`); what
    Litestar routes here (the path with a trailing slash, say) gets the same answer from
    the same code."""
    endpoint: SendEndpoint = request.app.state.send_endpoint
    client = request.client
    answer = await endpoint.answer(
        RequestHeaders(request.scope["headers"]), client.host if client else "", request.url.path, request.receive
    )
    return as_response(answer)


async def _answer_read(
    request: AnyRequest,
    send_service: SendService,
    read: Callable[[Caller], Awaitable[Body]],
) -> Response[Body]:
    """Reads pass the same key and IP checks as sends, and count against the key's read
    limit (its own, so polling a status never takes a send's place)."""
    # The rate-limit headers of any answer describe the read window (`errors.py` reads it).
    progress = request.state.progress = RequestProgress(read=True)
    client = request.client
    caller = await identify(
        progress,
        send_service,
        request.headers.get("authorization"),
        client.host if client else "",
        request.headers.getall("x-forwarded-for", []),
    )
    async with admitted(progress, send_service, caller) as admission:
        body = await read(caller)
    outcomes: Outcomes = request.app.state.outcomes
    outcomes.observe(request.scope.get("path_template") or UNMATCHED, "OK", progress)
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

    return await _answer_read(request, send_service, read)


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

    return await _answer_read(request, send_service, read)
