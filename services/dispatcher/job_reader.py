"""Turns a delivered body into a job, or into a dead letter saying why it cannot be one.

A body that is not JSON, not a job, or a schema version this dispatcher does not know is
dead-lettered at once: requeueing it would only crash-loop every dispatcher on it.
"""

from __future__ import annotations

from datetime import UTC, datetime

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


def _describe(exc: ValidationError) -> str:
    # Locations and messages only: the inputs may be phone numbers or message text.
    problems = [
        f"{'.'.join(str(p) for p in error['loc']) or '(body)'}: {error['msg']}"
        for error in exc.errors(include_input=False, include_url=False)[:10]
    ]
    more = exc.error_count() - len(problems)
    return "; ".join(problems) + (f" (and {more} more)" if more > 0 else "")
