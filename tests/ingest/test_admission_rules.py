"""The admission rules as plain functions of the Redis answers: no services needed."""

from __future__ import annotations

from decimal import Decimal

import pytest

from services.ingest.admission import Admission, Caps, RateLimited, SendPlan, check_rate, send_refusal
from services.ingest.idempotency import Claim, IdempotencyRecord, StoredResponse, decide
from services.ingest.ratelimit import (
    AdmissionAnswers,
    KeyWrite,
    RateDecision,
    Reservation,
    SpendAnswer,
    SpendVerdict,
    Verdict,
)
from shared.errors import ErrorCode, GatewayError
from shared.provider_state import ProviderState
from shared.segments import count_segments

ADMITTED = RateDecision(Verdict.ADMITTED, 100, 99, 1_800_000_000, 0, "slot-1")


def answers(
    *,
    rate: RateDecision = ADMITTED,
    blocked: frozenset[str] = frozenset(),
    state: ProviderState = ProviderState.OK,
    spend: SpendVerdict = SpendVerdict.UNCAPPED,
    reserved: int = 0,
) -> AdmissionAnswers:
    return AdmissionAnswers(
        rate=rate,
        blocked=blocked,
        provider_state=state,
        spend=SpendAnswer(spend, Decimal("99.50")),
        reservation=Reservation("acme", "key_1", rate.slot, "rsms:rl:{acme}:spend:20000" if reserved else "", reserved),
    )


def plan(message: str = "hi", sender: str | None = "RSMS", recipients: list[str] | None = None) -> SendPlan:
    recipients = recipients or ["+4712345678", "+4787654321"]
    segments = count_segments(message)
    return SendPlan(
        tag="billing",
        sender=sender,
        recipients=recipients,
        message=message,
        segments=segments,
        cost=Decimal("0.67") * segments.segments * len(recipients),
        currency="NOK",
    )


def test_a_refused_rate_raises_with_its_decision() -> None:
    refused = RateDecision(Verdict.TAG_LIMIT, 50, 0, 1_800_000_000, 12, "")
    with pytest.raises(RateLimited) as raised:
        check_rate(refused)
    assert raised.value.decision is refused and raised.value.retry_after == 12
    check_rate(ADMITTED)


def test_a_valid_admitted_request_is_not_refused() -> None:
    assert send_refusal(plan(), answers(), Caps(), test=False) is None


def test_the_checks_answer_in_the_contracts_order() -> None:
    everything_wrong = answers(
        blocked=frozenset({"+4787654321"}), state=ProviderState.NO_CREDITS, spend=SpendVerdict.OVER_CAP
    )
    caps = Caps(segments_per_message=1, daily_spend=Decimal(100))
    long_plan = plan("x" * 200, sender=None)
    codes = []
    for current_plan, current_caps, current_answers in [
        (long_plan, caps, everything_wrong),
        (plan(sender=None), caps, everything_wrong),
        (plan(), caps, everything_wrong),
        (plan(), caps, answers(spend=SpendVerdict.OVER_CAP, state=ProviderState.NO_CREDITS)),
        (plan(), caps, answers(state=ProviderState.NO_CREDITS)),
    ]:
        refusal = send_refusal(current_plan, current_answers, current_caps, test=False)
        assert refusal is not None
        codes.append(refusal.code)
    assert codes == [
        ErrorCode.VALIDATION_ERROR,
        ErrorCode.INVALID_TAG,
        ErrorCode.RECIPIENT_BLOCKED,
        ErrorCode.FORBIDDEN,
        ErrorCode.PROVIDER_NO_CREDITS,
    ]


def test_segment_cap_names_the_cap() -> None:
    refusal = send_refusal(plan("😀" * 200), answers(), Caps(segments_per_message=3), test=False)
    assert refusal is not None and refusal.code is ErrorCode.VALIDATION_ERROR
    assert refusal.details == ["message: 7 SMS segments (UCS-2) exceed this project's cap of 3 segments per message"]
    assert send_refusal(plan("😀" * 200), answers(), Caps(segments_per_message=7), test=False) is None


def test_spend_cap_is_forbidden_and_says_which_cap() -> None:
    refusal = send_refusal(plan(), answers(spend=SpendVerdict.OVER_CAP), Caps(daily_spend=Decimal(100)), test=False)
    assert refusal is not None and refusal.code is ErrorCode.FORBIDDEN
    assert "Daily spend cap" in refusal.message and "100.00 NOK" in refusal.message


def test_blocked_recipients_are_named_without_saying_who_blocked_them() -> None:
    refusal = send_refusal(plan(), answers(blocked=frozenset({"+4787654321"})), Caps(), test=False)
    assert refusal is not None and refusal.code is ErrorCode.RECIPIENT_BLOCKED
    assert refusal.details == ["recipients: +4787654321 is blocked"]
    assert "provider" not in refusal.message.lower()


def test_provider_outage_refuses_live_sends_only() -> None:
    down = answers(state=ProviderState.AUTH_ERROR)
    refusal = send_refusal(plan(), down, Caps(), test=False)
    assert refusal is not None and refusal.code is ErrorCode.PROVIDER_AUTH_ERROR
    assert send_refusal(plan(), down, Caps(), test=True) is None


def test_an_unpublished_request_gives_its_spend_back_a_published_one_keeps_it() -> None:
    admission = Admission(answers(spend=SpendVerdict.RESERVED, reserved=1_340_000), plan())
    assert admission.to_release() == Reservation("acme", "key_1", "slot-1", "rsms:rl:{acme}:spend:20000", 1_340_000)
    admission.keep_spend()
    assert admission.to_release() == Reservation("acme", "key_1", "slot-1")


def test_a_published_request_leaves_its_status_record_in_the_release() -> None:
    admission = Admission(answers(spend=SpendVerdict.RESERVED, reserved=1_340_000), plan())
    record = KeyWrite("rsms:accepted:acme:id", b"{}", 3600)
    admission.keep_spend()
    admission.leave(record)
    assert admission.to_release() == Reservation("acme", "key_1", "slot-1", record=record)


def test_idempotency_decisions() -> None:
    done = IdempotencyRecord("print-a", StoredResponse(200, b"{}"))
    assert decide(None, "print-a") is Claim.TAKE
    assert decide(IdempotencyRecord("print-a", None), "print-a") is Claim.WAIT
    assert decide(done, "print-a") is Claim.REPLAY
    with pytest.raises(GatewayError) as raised:
        decide(done, "print-b")
    assert raised.value.code is ErrorCode.VALIDATION_ERROR
    assert IdempotencyRecord.decode(done.encode()) == done
    # A pending claim: waited for while its holder may be alive, taken over once it cannot be.
    pending = IdempotencyRecord("print-a", None, "7f0c8a57-3a3c-4a39-9c52-3c5f0e6a2b10", 1000.0)
    assert IdempotencyRecord.decode(pending.encode()) == pending
    assert decide(pending, "print-a", now=1020.0, stale_after=21.0) is Claim.WAIT
    assert decide(pending, "print-a", now=1021.0, stale_after=21.0) is Claim.TAKE_OVER
    with pytest.raises(GatewayError):
        decide(pending, "print-b", now=5000.0, stale_after=21.0)  # still someone else's key
    # A claim written before claims named their message id still reads.
    assert IdempotencyRecord.decode('{"state": "pending", "fingerprint": "print-a"}') == IdempotencyRecord(
        "print-a", None
    )
