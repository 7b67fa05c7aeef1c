"""The checks every API request starts with, shared by the send endpoint and the reads:
who calls (the key, the project's IP allow-list), then admission against the limits.

Each step notes on the request's `RequestProgress` what its answer must show, whether
the request ends in an answer or in an error: the rate-limit decision behind the
X-RateLimit-* headers and the moment its latency is timed from.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass

from services.ingest.account_store import Caller
from services.ingest.admission import Admission, RateLimited
from services.ingest.ratelimit import RateDecision
from services.ingest.send import SendService
from services.ingest.validation import SendRequest
from shared.errors import GatewayError


@dataclass(slots=True)
class RequestProgress:
    """How far a request got, for its answer (`errors.py`)."""

    read: bool = False
    """A status or usage read: its headers describe the key's read window."""
    started: float | None = None
    """`perf_counter()` when its key was first looked at; its latency is timed from here."""
    decision: RateDecision | None = None
    """The limit it was counted against (or, refused early, the key's current usage)."""


async def identify(
    progress: RequestProgress,
    send_service: SendService,
    authorization: str | None,
    peer: str,
    forwarded_for: Sequence[str],
) -> Caller:
    """The key and IP checks: the caller, or the error (401, 403) to answer."""
    progress.started = time.perf_counter()
    access = send_service.access
    caller = access.authenticate(authorization)
    try:
        access.check_ip(caller, peer, forwarded_for)
    except GatewayError:
        progress.decision = await send_service.usage(caller, read=progress.read)
        raise
    return caller


async def count(
    progress: RequestProgress, send_service: SendService, caller: Caller, parsed: SendRequest | None = None
) -> Admission:
    """Count the request against its limits (a read against the key's read limit). What it
    returns holds a concurrency slot (and maybe a spend): `send_service.release` it however
    the request ends (`admitted` does)."""
    try:
        admission = await (send_service.admit_read(caller) if progress.read else send_service.admit(caller, parsed))
    except RateLimited as exc:
        progress.decision = exc.decision
        raise
    progress.decision = admission.rate
    return admission


@asynccontextmanager
async def admitted(
    progress: RequestProgress, send_service: SendService, caller: Caller, parsed: SendRequest | None = None
) -> AsyncIterator[Admission]:
    """The admission bracket: `count` the request, then, however the request ends, give
    back what it holds (its concurrency slot, an unused spend)."""
    admission = await count(progress, send_service, caller, parsed)
    try:
        yield admission
    finally:
        await send_service.release(admission)
