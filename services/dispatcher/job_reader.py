"""Turns a delivered body into jobs, or into dead letters saying why they cannot be jobs.

A body is one `SmsJob` or an `SmsJobBatch` of them (ingest's group commit); only a batch
has `jobs`. A body that is not JSON, not a job, or a schema version this dispatcher does not
know is dead-lettered at once: requeueing it would only crash-loop every dispatcher on it.
In a batch each job is read on its own, so one it cannot read is dead-lettered alone and
the others are dispatched.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import msgspec
from pydantic import ValidationError

from shared.contracts import DeadLetter, SmsJob

_MAX_KEPT_BODY = 64 * 1024


class _Envelope(msgspec.Struct):
    """Just enough of a body to tell a batch (which has `jobs`) from a single job."""

    jobs: list[msgspec.Raw] | None = None
    schema_version: int = 1


_envelope = msgspec.json.Decoder(_Envelope)
KNOWN_BATCH_VERSION = 1


def read_jobs(body: bytes) -> list[SmsJob | DeadLetter]:
    """The jobs of a delivered body, each a job or the dead letter of what could not be one."""
    try:
        envelope = _envelope.decode(body)
    except (msgspec.ValidationError, msgspec.DecodeError):
        return [read_job(body)]  # not a batch: whatever it is, read_job says why
    if envelope.jobs is None:
        return [read_job(body)]
    if envelope.schema_version != KNOWN_BATCH_VERSION or not envelope.jobs:
        return [_unreadable(body, f"schema_version: a batch of version {envelope.schema_version}, or empty")]
    return [read_job(bytes(raw)) for raw in envelope.jobs]


def _unreadable(body: bytes, detail: str) -> DeadLetter:
    return DeadLetter(
        reason="invalid_job",
        detail=detail,
        dead_lettered_at=datetime.now(UTC),
        body=body[:_MAX_KEPT_BODY].decode("utf-8", errors="replace"),
    )


def read_job(body: bytes) -> SmsJob | DeadLetter:
    try:
        return SmsJob.model_validate_json(body)
    except ValidationError as exc:
        return _unreadable(body, _describe(exc))


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
