"""What the API takes from a request before its logic looks at it: headers within their
size, a JSON body only, read only after the key was checked, bounded in size and in time.

Why the body waits for the key: a body is the one part of a request a client can make
last as long as it likes. Read first, 1,000 connections trickling a byte every few
seconds held every worker's connections without any key (issue 8). Now a request without
a valid key is answered from its headers, and a keyed one has `body_timeout` seconds to
deliver its body. (The server itself bounds the time to send the headers.)
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any, cast

from litestar import Request
from litestar.types import Receive

from services.ingest.body_deadlines import BodyDeadlines
from services.ingest.number_policy import NumberPolicy
from services.ingest.validation import SendRequest, parse_send_request
from shared.errors import ErrorCode, GatewayError
from shared.log import get_logger

log = get_logger(__name__)

JSON_MEDIA_TYPE = "application/json"
HTTP_408_REQUEST_TIMEOUT = 408
HTTP_413_CONTENT_TOO_LARGE = 413


class ClientLeft(Exception):
    """The body ended before it was complete: the client closed the connection (or its
    chunked framing was malformed, which the server reports the same way)."""


HTTP_431_HEADERS_TOO_LARGE = 431


def headers_too_large(limit: int) -> GatewayError:
    return GatewayError(
        ErrorCode.VALIDATION_ERROR,
        f"Request headers exceed the maximum size of {limit // 1024} KB",
        status=HTTP_431_HEADERS_TOO_LARGE,
    )


def check_header_size(headers: Iterable[tuple[bytes, bytes]], limit: int) -> None:
    """Headers over the limit get the contract's error shape from here. (A head over twice
    the limit is refused by the server with the same error before it reaches the app:
    `http_server.py`.)"""
    if sum(len(name) + len(value) for name, value in headers) > limit:
        raise headers_too_large(limit)


async def check_request_header_size(request: Request[Any, Any, Any]) -> None:
    """`check_header_size` as the Litestar routes' `before_request` hook."""
    check_header_size(request.scope["headers"], request.app.state.max_header_bytes)


def too_large(max_bytes: int) -> GatewayError:
    return GatewayError(
        ErrorCode.VALIDATION_ERROR,
        f"Request body exceeds the maximum size of {max_bytes / 1_048_576:g} MB",
        status=HTTP_413_CONTENT_TOO_LARGE,
    )


def declared_too_large(content_length: str | None, max_bytes: int) -> bool:
    """A Content-Length over the limit can be refused before anything else."""
    return content_length is not None and content_length.isdigit() and int(content_length) > max_bytes


def content_type_error(content_type: str | None) -> GatewayError | None:
    """None for `application/json` (any case, optionally `; charset=utf-8`), else the error.

    A missing Content-Type is refused too: the contract lists the header as required, and
    `curl -d` without `-H "Content-Type: application/json"` sends a form type, which a
    gateway that guessed would accept one day and refuse the next.
    """
    if content_type is not None:
        media_type, _, parameters = content_type.partition(";")
        charset = parameters.strip().lower().replace(" ", "").replace('"', "")
        if media_type.strip().lower() == JSON_MEDIA_TYPE and charset in ("", "charset=utf-8"):
            return None
    shown = (content_type or "")[:60] or "missing"
    return GatewayError(
        ErrorCode.VALIDATION_ERROR,
        "Request body must be JSON",
        details=[f"Content-Type: must be application/json (UTF-8), not {shown}"],
    )


async def read_body(receive: Receive, max_bytes: int, time_limit: float, deadlines: BodyDeadlines) -> bytes:
    """The whole body, at most `max_bytes` (else 413) within `time_limit` seconds (else 408;
    `deadlines` keeps the time).

    Raises `ClientLeft` when the body ends early. Read from the ASGI messages directly:
    Litestar's own reader turns a disconnect into a 500 (and the send endpoint has no
    Litestar request: `send_endpoint.py`).
    """
    chunks: list[bytes] = []
    size = 0
    started = deadlines.start(time_limit)
    try:
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise ClientLeft
            chunk = cast(bytes, message.get("body", b""))
            size += len(chunk)
            if size > max_bytes:
                raise too_large(max_bytes)
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
    except asyncio.CancelledError:
        if not deadlines.timed_out(started):
            raise
        raise GatewayError(
            ErrorCode.VALIDATION_ERROR,
            f"Request body not received within {time_limit:g} seconds",
            status=HTTP_408_REQUEST_TIMEOUT,
        ) from None
    finally:
        deadlines.finish(started)
    return b"".join(chunks)


async def receive_send_request(
    content_type: str | None,
    receive: Receive,
    max_bytes: int,
    time_limit: float,
    deadlines: BodyDeadlines,
    policy: NumberPolicy,
) -> tuple[SendRequest | None, GatewayError | None]:
    """The parsed request, or the payload error that the admission step will answer with
    (so a malformed body counts against the limits like any other request).

    Raises what ends the request at once: 408, 413, `ClientLeft`.
    """
    wrong_type = content_type_error(content_type)
    if wrong_type is not None:
        return None, wrong_type
    body = await read_body(receive, max_bytes, time_limit, deadlines)
    try:
        return parse_send_request(body, policy=policy), None
    except GatewayError as error:  # answered once the request is counted: no free pass
        return None, error
