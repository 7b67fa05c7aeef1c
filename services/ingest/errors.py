"""The HTTP edge: every failure becomes the contract's error shape, in one place.

Domain code raises `GatewayError`; Litestar's own exceptions (body too large, unknown
route, wrong method) and anything unexpected are mapped here too, so a client never sees
a traceback or a body outside the contract. Rate-limit headers go on every answer.
"""

from __future__ import annotations

import time
from typing import Any

from litestar import MediaType, Request, Response
from litestar.exceptions import HTTPException
from litestar.status_codes import HTTP_413_REQUEST_ENTITY_TOO_LARGE

from services.ingest.metrics import IngestMetrics
from services.ingest.ratelimit import RateDecision
from shared.errors import ErrorCode, GatewayError
from shared.log import get_logger

log = get_logger(__name__)

AnyRequest = Request[Any, Any, Any]


def rate_headers(request: AnyRequest) -> dict[str, str]:
    decision: RateDecision | None = request.state.get("rate_decision")
    if decision is None:
        decision = RateDecision.untracked(request.app.state.default_requests_per_minute)
    return decision.headers()


def observe(request: AnyRequest, code: str) -> None:
    metrics: IngestMetrics = request.app.state.metrics
    endpoint = request.scope.get("path_template") or "unmatched"
    metrics.requests.labels(endpoint, code).inc()
    started = request.state.get("started")
    if started is not None:
        metrics.latency.labels(endpoint).observe(time.perf_counter() - started)


def error_response(request: AnyRequest, error: GatewayError) -> Response[Any]:
    observe(request, error.code.value)
    headers = rate_headers(request)
    if error.retry_after is not None:
        headers["Retry-After"] = str(error.retry_after)
    return Response(error.body(), status_code=error.http_status, headers=headers, media_type=MediaType.JSON)


def handle_gateway_error(request: AnyRequest, exc: GatewayError) -> Response[Any]:
    if exc.http_status >= 500:
        log.warning("request_failed", code=exc.code.value, reason=exc.message, path=request.url.path)
    return error_response(request, exc)


def handle_http_exception(request: AnyRequest, exc: HTTPException) -> Response[Any]:
    if exc.status_code == HTTP_413_REQUEST_ENTITY_TOO_LARGE:
        limit = request.app.state.max_body_bytes
        error = GatewayError(
            ErrorCode.VALIDATION_ERROR,
            f"Request body exceeds the maximum size of {limit // 1_048_576} MB",
            status=HTTP_413_REQUEST_ENTITY_TOO_LARGE,
        )
    elif exc.status_code >= 500:
        error = GatewayError(ErrorCode.INTERNAL_ERROR)
    elif exc.status_code == 401:
        error = GatewayError(ErrorCode.UNAUTHORIZED)
    else:
        # Unknown route, wrong method, bad path parameter: a client error the catalogue
        # has no own code for; the status says which.
        error = GatewayError(ErrorCode.VALIDATION_ERROR, str(exc.detail), status=exc.status_code)
    return error_response(request, error)


def handle_unexpected(request: AnyRequest, exc: Exception) -> Response[Any]:
    log.error("unexpected_error", path=request.url.path, error_type=type(exc).__name__, exc_info=exc)
    return error_response(request, GatewayError(ErrorCode.INTERNAL_ERROR))
