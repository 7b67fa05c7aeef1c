"""What the sync and async clients share: request bodies, reading answers, when to retry.

Plain functions of their inputs, so both clients make the same decisions and only their
I/O differs (`httpx.Client` and `time.sleep`, or `httpx.AsyncClient` and `asyncio.sleep`).
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date
from typing import Any
from urllib.parse import quote

import httpx

from rsms_client.errors import ApiError, ErrorCode

VERSION = "0.1.0"
USER_AGENT = f"rsms-client/{VERSION}"
MAX_RECIPIENTS_PER_REQUEST = 1000  # the contract's limit
MAX_RATE_LIMIT_PAUSE_SECONDS = 60.0  # the limits are per minute: a longer wait is a clock skew
SEND_PATH = "/api/v1/sms/send"
USAGE_PATH = "/api/v1/usage"

# 5xx codes that a retry cannot fix: the provider account needs an administrator.
_NOT_RETRIED = frozenset({ErrorCode.PROVIDER_AUTH_ERROR, ErrorCode.PROVIDER_NO_CREDITS})


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how long a request is retried.

    Retried: 429 (after its `Retry-After`), 5xx other than the provider account errors,
    408, and connections that failed or broke. A send keeps its Idempotency-Key on every
    attempt, so a retry of a send the gateway did queue answers the first `messageId` and
    queues nothing.
    """

    max_attempts: int = 5
    """Attempts per request, the first included (1: never retry)."""
    backoff_initial: float = 0.5
    """Seconds before the first retry when the gateway named no `Retry-After`; doubles."""
    backoff_max: float = 30.0
    max_retry_after: float = 120.0
    """A `Retry-After` longer than this is not waited for: the error is raised instead."""

    def backoff(self, retry: int) -> float:
        """Seconds before retry number `retry` (1, 2, …): exponential, jittered so that many
        clients refused at once do not all come back at once."""
        ceiling = min(self.backoff_max, self.backoff_initial * 2 ** (retry - 1))
        return random.uniform(ceiling / 2, ceiling)


def auth_headers(api_key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {api_key}", "User-Agent": USER_AGENT, "Accept": "application/json"}


def recipient_list(recipients: Iterable[str]) -> list[str]:
    if isinstance(recipients, str):
        raise TypeError("recipients must be a list of numbers, not one string")
    return list(recipients)


def send_body(tag: str, recipients: list[str], message: str) -> dict[str, Any]:
    return {"tag": tag, "recipients": recipients, "message": message}


def new_idempotency_key() -> str:
    return str(uuid.uuid4())


def status_path(message_id: str) -> str:
    return f"/api/v1/sms/{quote(str(message_id), safe='')}"


def usage_params(date_from: date | str, date_to: date | str, group_by: str) -> dict[str, str]:
    def day(value: date | str) -> str:
        return value.isoformat() if isinstance(value, date) else value

    return {"from": day(date_from), "to": day(date_to), "groupBy": group_by}


def plan_batches(recipients: Iterable[str], batch_size: int) -> list[list[str]]:
    """The recipients without duplicates (first occurrence kept, so nobody is in two
    batches and gets the message twice), in batches of `batch_size`."""
    if not 1 <= batch_size <= MAX_RECIPIENTS_PER_REQUEST:
        raise ValueError(f"batch_size must be 1-{MAX_RECIPIENTS_PER_REQUEST}, not {batch_size}")
    unique = list(dict.fromkeys(recipient_list(recipients)))
    if not unique:
        raise ValueError("no recipients")
    return [unique[i : i + batch_size] for i in range(0, len(unique), batch_size)]


def batch_idempotency_key(base: str | None, index: int) -> str:
    """One key per batch. From a caller's `base` key the same batches get the same keys, so
    running the same `send_many()` again (after a crash) queues nothing twice."""
    return new_idempotency_key() if base is None else f"{base}-{index + 1}"


def data_of(response: httpx.Response) -> Mapping[str, Any]:
    """The `data` of a successful answer; anything else raises its `ApiError`."""
    if response.is_success:
        body = _json(response)
        if isinstance(body, dict) and body.get("success") is True and isinstance(body.get("data"), dict):
            return body["data"]  # type: ignore[no-any-return]
    raise api_error(response)


def api_error(response: httpx.Response) -> ApiError:
    """The contract's error body as an exception; a body in another shape keeps its status."""
    body = _json(response)
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict) and isinstance(error.get("code"), str):
        details = error.get("details")
        return ApiError(
            status=response.status_code,
            code=_code(error["code"]),
            message=str(error.get("message", "")),
            details=[str(d) for d in details] if isinstance(details, list) else [],
            retry_after=_retry_after(response, error.get("retryAfter")),
        )
    return ApiError(
        status=response.status_code,
        code=f"HTTP_{response.status_code}",
        message=response.text[:200] or response.reason_phrase,
        retry_after=_retry_after(response, None),
    )


def retry_delay(policy: RetryPolicy, attempt: int, error: ApiError | None) -> float | None:
    """Seconds to wait before attempt `attempt + 1`, or None when this is final.

    `error` is None for a connection that failed or broke (retried: the Idempotency-Key
    makes it safe).
    """
    if attempt >= policy.max_attempts:
        return None
    if error is None:
        return policy.backoff(attempt)
    retryable = error.status in (408, 429) or (error.status >= 500 and error.code not in _NOT_RETRIED)
    if not retryable:
        return None
    if error.retry_after is not None:
        return float(error.retry_after) if error.retry_after <= policy.max_retry_after else None
    return policy.backoff(attempt)


def rate_limit_pause(response: httpx.Response, now: float) -> float:
    """Seconds to wait before the next request so as not to be refused: none while the
    key's window has requests left, else until its oldest request leaves (`X-RateLimit-Reset`,
    Unix seconds of the gateway's clock; capped, as the clocks may disagree)."""
    try:
        remaining = int(response.headers["X-RateLimit-Remaining"])
        reset = float(response.headers["X-RateLimit-Reset"])
    except (KeyError, ValueError):
        return 0.0
    if remaining > 0:
        return 0.0
    return max(0.0, min(reset - now, MAX_RATE_LIMIT_PAUSE_SECONDS))


def _json(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


def _code(value: str) -> str:
    try:
        return ErrorCode(value)
    except ValueError:
        return value


def _retry_after(response: httpx.Response, in_body: Any) -> int | None:
    """The `Retry-After` header (seconds), else the body's `retryAfter`."""
    for value in (response.headers.get("Retry-After"), in_body):
        if value is None:
            continue
        try:
            return max(0, int(value))
        except (TypeError, ValueError):
            continue  # an HTTP date, or junk: the gateway sends seconds
    return None
