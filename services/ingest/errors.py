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

from services.ingest.http_limits import too_large
from services.ingest.metrics import IngestMetrics
from services.ingest.ratelimit import RateDecision
from shared.errors import ErrorCode, GatewayError
from shared.log import get_logger

log = get_logger(__name__)

AnyRequest = Request[Any, Any, Any]


def rate_headers(request: AnyRequest) -> dict[str, str]:
    decision: RateDecision | None = request.state.get("rate_decision")
    if decision is None:
        state = request.app.state
        read = request.state.get("read", False)
        decision = RateDecision.untracked(state.default_reads_per_minute if read else state.default_requests_per_minute)
    return decision.headers()


def observe(request: AnyRequest, code: str) -> None:
    metrics: IngestMetrics = request.app.state.metrics
    endpoint = request.scope.get("path_template") or "unmatched"
    metrics.requests.labels(endpoint, code).inc()
    started = request.state.get("started")
    if started is not None:
        metrics.latency.labels(endpoint).observe(time.perf_counter() - started)


def error_response(
    request: AnyRequest, error: GatewayError, more_headers: dict[str, str] | None = None
) -> Response[Any]:
    observe(request, error.code.value)
    headers = rate_headers(request) | (more_headers or {})
    if error.retry_after is not None:
        headers["Retry-After"] = str(error.retry_after)
    return Response(error.body(), status_code=error.http_status, headers=headers, media_type=MediaType.JSON)


def handle_gateway_error(request: AnyRequest, exc: GatewayError) -> Response[Any]:
    if exc.http_status >= 500:
        log.warning("request_failed", code=exc.code.value, reason=exc.message, path=request.url.path)
    return error_response(request, exc)


def handle_http_exception(request: AnyRequest, exc: HTTPException) -> Response[Any]:
    if exc.status_code == HTTP_413_REQUEST_ENTITY_TOO_LARGE:
        error = too_large(request.app.state.max_body_bytes)
    elif exc.status_code >= 500:
        error = GatewayError(ErrorCode.INTERNAL_ERROR)
    elif exc.status_code == 401:
        error = GatewayError(ErrorCode.UNAUTHORIZED)
    else:
        # Unknown route, wrong method, bad path parameter: a client error the catalogue
        # has no own code for; the status says which.
        error = GatewayError(ErrorCode.VALIDATION_ERROR, str(exc.detail), status=exc.status_code)
    # Litestar's own headers of the answer, such as a 405's Allow.
    return error_response(request, error, exc.headers)


def handle_client_left(request: AnyRequest, exc: Exception) -> Response[Any]:
    """The body ended early. Mostly a client that went away (nobody reads this answer, and
    it is no error of ours, so it is not counted); a malformed chunked body looks the same
    from here, and that client does read it."""
    log.info("request_body_incomplete", path=request.url.path)
    error = GatewayError(
        ErrorCode.VALIDATION_ERROR,
        "Request body incomplete",
        details=["body: the connection ended before the whole body arrived, or its chunked framing is malformed"],
    )
    return Response(
        error.body(), status_code=error.http_status, headers=rate_headers(request), media_type=MediaType.JSON
    )


def handle_unexpected(request: AnyRequest, exc: Exception) -> Response[Any]:
    log.error("unexpected_error", path=request.url.path, error_type=type(exc).__name__, exc_info=exc)
    return error_response(request, GatewayError(ErrorCode.INTERNAL_ERROR))
