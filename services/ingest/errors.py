"""The HTTP edge: every failure becomes the contract's error shape, in one place.

Domain code raises `GatewayError`; Litestar's own exceptions (body too large, unknown
route, wrong method) and anything unexpected are mapped here too, so a client never sees
a traceback or a body outside the contract. Rate-limit headers go on every answer.

`Outcomes` makes the answers and counts them; the send endpoint (`send_endpoint.py`, a
plain ASGI application) uses it directly, the Litestar routes through the exception
handlers below.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import msgspec
from litestar import MediaType, Request, Response
from litestar.exceptions import HTTPException
from litestar.status_codes import HTTP_413_REQUEST_ENTITY_TOO_LARGE

from services.ingest.entry_checks import RequestProgress
from services.ingest.http_limits import too_large
from services.ingest.metrics import IngestMetrics
from services.ingest.ratelimit import RateDecision
from shared.errors import ErrorCode, GatewayError
from shared.log import get_logger

log = get_logger(__name__)

AnyRequest = Request[Any, Any, Any]
UNMATCHED = "unmatched"
"""The endpoint label of a request no route took."""

_encode = msgspec.json.Encoder().encode


@dataclass(frozen=True, slots=True)
class Answer:
    """A JSON answer: its status, headers (besides Content-Type and Content-Length) and body."""

    status: int
    headers: dict[str, str]
    body: bytes


class Outcomes:
    """Answers for the ways a request ends, counted in the metrics by endpoint and code."""

    def __init__(self, metrics: IngestMetrics, *, requests_per_minute: int, reads_per_minute: int) -> None:
        self.metrics = metrics
        self._requests_per_minute = requests_per_minute
        self._reads_per_minute = reads_per_minute

    def observe(self, endpoint: str, code: str, progress: RequestProgress | None) -> None:
        self.metrics.requests_of(endpoint, code).inc()
        started = progress.started if progress is not None else None
        if started is not None:
            self.metrics.latency_of(endpoint).observe(time.perf_counter() - started)

    def rate_headers(self, progress: RequestProgress | None) -> dict[str, str]:
        decision: RateDecision | None = progress.decision if progress is not None else None
        if decision is None:
            read = progress is not None and progress.read
            decision = RateDecision.untracked(self._reads_per_minute if read else self._requests_per_minute)
        return decision.headers()

    def error(
        self,
        endpoint: str,
        progress: RequestProgress | None,
        error: GatewayError,
        more_headers: dict[str, str] | None = None,
    ) -> Answer:
        self.observe(endpoint, error.code.value, progress)
        headers = self.rate_headers(progress) | (more_headers or {})
        if error.retry_after is not None:
            headers["Retry-After"] = str(error.retry_after)
        return Answer(error.http_status, headers, _encode(error.body()))

    def refused(self, endpoint: str, path: str, progress: RequestProgress | None, error: GatewayError) -> Answer:
        """A `GatewayError` raised while answering."""
        if error.http_status >= 500:
            log.warning("request_failed", code=error.code.value, reason=error.message, path=path)
        return self.error(endpoint, progress, error)

    def client_left(self, path: str, progress: RequestProgress | None) -> Answer:
        """The body ended early. Mostly a client that went away (nobody reads this answer,
        and it is no error of ours, so it is not counted); a malformed chunked body looks
        the same from here, and that client does read it."""
        log.info("request_body_incomplete", path=path)
        error = GatewayError(
            ErrorCode.VALIDATION_ERROR,
            "Request body incomplete",
            details=["body: the connection ended before the whole body arrived, or its chunked framing is malformed"],
        )
        return Answer(error.http_status, self.rate_headers(progress), _encode(error.body()))

    def unexpected(self, endpoint: str, path: str, progress: RequestProgress | None, exc: Exception) -> Answer:
        log.error("unexpected_error", path=path, error_type=type(exc).__name__, exc_info=exc)
        return self.error(endpoint, progress, GatewayError(ErrorCode.INTERNAL_ERROR))


# --- the Litestar app's exception handlers ---------------------------------------------


def as_response(answer: Answer) -> Response[Any]:
    return Response(answer.body, status_code=answer.status, headers=answer.headers, media_type=MediaType.JSON)


def _outcomes(request: AnyRequest) -> Outcomes:
    outcomes: Outcomes = request.app.state.outcomes
    return outcomes


def _endpoint(request: AnyRequest) -> str:
    return request.scope.get("path_template") or UNMATCHED


def _progress(request: AnyRequest) -> RequestProgress | None:
    progress: RequestProgress | None = request.state.get("progress")
    return progress


def handle_gateway_error(request: AnyRequest, exc: GatewayError) -> Response[Any]:
    return as_response(_outcomes(request).refused(_endpoint(request), request.url.path, _progress(request), exc))


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
    return as_response(_outcomes(request).error(_endpoint(request), _progress(request), error, exc.headers))


def handle_unexpected(request: AnyRequest, exc: Exception) -> Response[Any]:
    return as_response(_outcomes(request).unexpected(_endpoint(request), request.url.path, _progress(request), exc))
