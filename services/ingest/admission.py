"""The admission rules of a send: plain functions of the request, the project and the
answers of the one Redis round trip (`ratelimit.py`), so they are tested without services.

Order of answers (the first that applies wins), after the key, project and IP checks:
429 limits → 400 payload → 400 segments over the project's cap → 400 tag → 400 blocked
recipient → 403 daily spend cap → 500 provider down → queued.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from decimal import Decimal

from services.ingest.ratelimit import AdmissionAnswers, KeyWrite, RateDecision, Reservation, SpendVerdict
from shared.errors import ErrorCode, GatewayError
from shared.money import format_money
from shared.segments import SegmentCount


class RateLimited(GatewayError):
    """Over a limit; carries the decision so the answer can show the limit's headers."""

    def __init__(self, decision: RateDecision) -> None:
        super().__init__(
            ErrorCode.RATE_LIMIT_EXCEEDED,
            f"Rate limit exceeded. Try again in {decision.retry_after} seconds",
            retry_after=decision.retry_after,
        )
        self.decision = decision


@dataclass(frozen=True, slots=True)
class Caps:
    """A project's caps against runaway cost; None: no cap."""

    segments_per_message: int | None = None
    daily_spend: Decimal | None = None


@dataclass(frozen=True, slots=True)
class SendPlan:
    """What a valid request would send and cost, known before any I/O."""

    tag: str
    sender: str | None
    """None when the tag is unknown or inactive."""
    recipients: list[str]
    message: str
    segments: SegmentCount
    cost: Decimal
    currency: str
    prices: dict[str, Decimal] = field(default_factory=dict)
    """Per-segment prices of the recipients' countries (`PriceTable.quote`)."""

    def within_segment_cap(self, caps: Caps) -> bool:
        return caps.segments_per_message is None or self.segments.segments <= caps.segments_per_message


@dataclass(slots=True)
class Admission:
    """An admitted request: its Redis answers and what it holds until it ends."""

    answers: AdmissionAnswers
    plan: SendPlan | None = None
    spend_kept: bool = field(default=False)
    """Set once the job is published: its spend stays counted."""
    record: KeyWrite | None = None
    """What the request leaves behind, written when it ends (the published message's status
    record, see `accepted.py`)."""

    @property
    def rate(self) -> RateDecision:
        return self.answers.rate

    def keep_spend(self) -> None:
        self.spend_kept = True

    def leave(self, record: KeyWrite) -> None:
        self.record = record

    def to_release(self) -> Reservation:
        held = self.answers.reservation
        kept = Reservation(held.project, held.key_id, held.slot) if self.spend_kept else held
        return replace(kept, record=self.record)


def check_rate(rate: RateDecision) -> None:
    if not rate.admitted:
        raise RateLimited(rate)


def send_refusal(plan: SendPlan, answers: AdmissionAnswers, caps: Caps, *, test: bool) -> GatewayError | None:
    """Why a valid, admitted request may not be queued, in the contract's order; or None."""
    if not plan.within_segment_cap(caps):
        return GatewayError(
            ErrorCode.VALIDATION_ERROR,
            details=[
                f"message: {plan.segments.segments} SMS segments ({plan.segments.encoding}) exceed this "
                f"project's cap of {caps.segments_per_message} segments per message"
            ],
        )
    if plan.sender is None:
        return GatewayError(ErrorCode.INVALID_TAG, f"Tag '{plan.tag}' not found or inactive")
    if answers.blocked:
        blocked = [n for n in plan.recipients if n in answers.blocked]
        # One answer whatever put a number on the list (the provider after any project's
        # send, an operator, the number's own STOP to this project): where a block came
        # from, and so which other project sent to the number, is not for this project to learn.
        return GatewayError(
            ErrorCode.RECIPIENT_BLOCKED,
            f"{len(blocked)} recipient(s) cannot receive messages; remove them and send again",
            details=[f"recipients: {number} is blocked" for number in blocked],
        )
    if answers.spend.verdict is SpendVerdict.OVER_CAP:
        assert caps.daily_spend is not None
        return GatewayError(
            ErrorCode.FORBIDDEN,
            f"Daily spend cap reached: this request ({format_money(plan.cost, plan.currency)}) would take the "
            f"project's spend today ({format_money(answers.spend.spent, plan.currency)}) over its cap of "
            f"{format_money(caps.daily_spend, plan.currency)} per UTC day; contact your administrator",
        )
    provider_error = answers.provider_state.error_code
    if provider_error is not None and not test:
        return GatewayError(provider_error)
    return None
