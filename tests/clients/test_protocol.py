"""The client's decisions as plain functions: when to retry and how long to wait, how
recipients are split, how an error answer reads."""

from __future__ import annotations

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from rsms_client import ApiError, ErrorCode, RetryPolicy
from rsms_client._protocol import api_error, batch_idempotency_key, plan_batches, rate_limit_pause, retry_delay

POLICY = RetryPolicy(max_attempts=4, backoff_initial=0.5, backoff_max=4.0, max_retry_after=120)


def answer(status: int, body: object = None, **headers: str) -> httpx.Response:
    return httpx.Response(status, json=body, headers=headers)


def error(status: int, code: str, retry_after: int | None = None) -> ApiError:
    return ApiError(status, code, "m", retry_after=retry_after)


def test_the_contract_error_body_becomes_an_api_error() -> None:
    body = {
        "success": False,
        "error": {
            "code": "RATE_LIMIT_EXCEEDED",
            "message": "Rate limit exceeded. Try again in 7 seconds",
            "retryAfter": 7,
        },
    }
    raised = api_error(answer(429, body, **{"Retry-After": "7"}))
    assert (raised.status, raised.code, raised.retry_after, raised.details) == (
        429,
        ErrorCode.RATE_LIMIT_EXCEEDED,
        7,
        [],
    )
    assert api_error(answer(429, body)).retry_after == 7  # the body's retryAfter without the header

    details = {
        "success": False,
        "error": {
            "code": "VALIDATION_ERROR",
            "message": "Invalid request payload",
            "details": ["recipients[0]: Invalid phone number format '+47abc'"],
        },
    }
    assert api_error(answer(400, details)).details == ["recipients[0]: Invalid phone number format '+47abc'"]


def test_an_answer_in_another_shape_keeps_its_status() -> None:
    raised = api_error(httpx.Response(502, text="<html>Bad Gateway</html>"))
    assert (raised.status, raised.code, raised.message) == (502, "HTTP_502", "<html>Bad Gateway</html>")
    assert retry_delay(POLICY, 1, raised) is not None


def test_429_waits_its_retry_after_and_5xx_backs_off() -> None:
    assert retry_delay(POLICY, 1, error(429, "RATE_LIMIT_EXCEEDED", retry_after=42)) == 42
    assert retry_delay(POLICY, 1, error(500, "INTERNAL_ERROR", retry_after=1)) == 1
    assert 0.25 <= retry_delay(POLICY, 1, error(500, "INTERNAL_ERROR")) <= 0.5  # type: ignore[operator]
    assert 1.0 <= retry_delay(POLICY, 3, error(503, "HTTP_503")) <= 2.0  # type: ignore[operator]
    assert 0.25 <= retry_delay(POLICY, 1, None) <= 0.5  # type: ignore[operator]  # the connection broke


@pytest.mark.parametrize(
    ("status", "code"),
    [
        (400, "VALIDATION_ERROR"),
        (400, "INVALID_TAG"),
        (401, "UNAUTHORIZED"),
        (403, "FORBIDDEN"),
        (404, "VALIDATION_ERROR"),
        (500, "PROVIDER_AUTH_ERROR"),
        (500, "PROVIDER_NO_CREDITS"),
    ],
)
def test_what_a_retry_cannot_fix_is_raised_at_once(status: int, code: str) -> None:
    assert retry_delay(POLICY, 1, error(status, code)) is None


def test_retries_end() -> None:
    assert retry_delay(POLICY, 4, error(429, "RATE_LIMIT_EXCEEDED", retry_after=1)) is None
    assert retry_delay(POLICY, 1, error(429, "RATE_LIMIT_EXCEEDED", retry_after=3600)) is None  # too long to wait


@given(st.integers(min_value=1, max_value=60))
def test_the_backoff_stays_within_its_bounds(retry: int) -> None:
    ceiling = min(POLICY.backoff_max, POLICY.backoff_initial * 2 ** (retry - 1))
    assert ceiling / 2 <= POLICY.backoff(retry) <= ceiling


def test_pause_only_when_no_request_is_left() -> None:
    assert rate_limit_pause(answer(200, {}, **{"X-RateLimit-Remaining": "3", "X-RateLimit-Reset": "1030"}), 1000) == 0
    assert rate_limit_pause(answer(200, {}, **{"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "1030"}), 1000) == 30
    assert rate_limit_pause(answer(200, {}, **{"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "99999"}), 1000) == 60
    assert rate_limit_pause(answer(200, {}, **{"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "900"}), 1000) == 0
    assert rate_limit_pause(answer(200, {}), 1000) == 0


@given(
    st.lists(st.sampled_from([f"+4791{i:06d}" for i in range(50)]), min_size=1, max_size=300),
    st.integers(min_value=1, max_value=1000),
)
def test_batches_hold_every_recipient_once_in_order(recipients: list[str], size: int) -> None:
    batches = plan_batches(recipients, size)
    flat = [r for batch in batches for r in batch]
    assert flat == list(dict.fromkeys(recipients))
    assert all(1 <= len(batch) <= size for batch in batches)


def test_bad_batches_are_refused() -> None:
    with pytest.raises(ValueError, match="batch_size"):
        plan_batches(["+4712345678"], 1001)
    with pytest.raises(ValueError, match="no recipients"):
        plan_batches([], 1000)
    with pytest.raises(TypeError):
        plan_batches("+4712345678", 1000)


def test_batch_keys_follow_a_given_key_and_are_new_otherwise() -> None:
    assert [batch_idempotency_key("invoice-7", i) for i in range(3)] == ["invoice-7-1", "invoice-7-2", "invoice-7-3"]
    assert batch_idempotency_key(None, 0) != batch_idempotency_key(None, 0)
