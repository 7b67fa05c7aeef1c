"""Turns a delivered body into a job, or into a dead letter saying why it cannot be one.

A body that is not JSON, not a job, or a schema version this dispatcher does not know is
dead-lettered at once: requeueing it would only crash-loop every dispatcher on it.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from shared.contracts import DeadLetter, SmsJob

_MAX_KEPT_BODY = 64 * 1024


def read_job(body: bytes) -> SmsJob | DeadLetter:
    try:
        return SmsJob.model_validate_json(body)
    except ValidationError as exc:
        return DeadLetter(
            reason="invalid_job",
            detail=_describe(exc),
            dead_lettered_at=datetime.now(UTC),
            body=body[:_MAX_KEPT_BODY].decode("utf-8", errors="replace"),
        )


def delivered_before(headers: Mapping[str, Any]) -> bool:
    """Whether the broker dead-lettered this job at its delivery limit (an `x-death` entry)
    before an operator replayed it (`rsms dlq replay` sends it back as it was). Its new
    delivery is not marked redelivered, yet dispatchers had it many times and may have sent
    some of it: it must be treated as a redelivery, not as a job nobody ever held."""
    deaths = headers.get("x-death")
    if not isinstance(deaths, list):
        return False
    return any(isinstance(d, Mapping) and d.get("reason") == "delivery_limit" for d in deaths)


def _describe(exc: ValidationError) -> str:
    # Locations and messages only: the inputs may be phone numbers or message text.
    problems = [
        f"{'.'.join(str(p) for p in error['loc']) or '(body)'}: {error['msg']}"
        for error in exc.errors(include_input=False, include_url=False)[:10]
    ]
    more = exc.error_count() - len(problems)
    return "; ".join(problems) + (f" (and {more} more)" if more > 0 else "")
