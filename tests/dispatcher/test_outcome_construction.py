"""The dispatcher builds each recipient's outcome without pydantic's `model_construct`
(`job_dispatcher._fast_outcome`): it must be the very object pydantic would build, or the
fast path must not be taken. This fails loudly when a pydantic upgrade changes that."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from uuid import UUID

import pytest

from services.dispatcher.job_dispatcher import (
    _constructed_event,
    _fast_event,
    _fast_outcome,
    event_constructor,
    outcome_constructor,
)
from shared.contracts import OutcomeEvent, RecipientOutcome

CASES = [
    {
        "recipient": "+4790000001",
        "country": "NO",
        "status": "sent",
        "segments": 2,
        "cost": Decimal("1.34"),
        "provider_reference": "smsc-1",
        "error_code": None,
        "error_message": None,
    },
    {
        "recipient": "+4790000002",
        "country": "NO",
        "status": "failed",
        "segments": 1,
        "cost": Decimal(0),
        "provider_reference": None,
        "error_code": "RECIPIENT_BLOCKED",
        "error_message": "provider reported the number as blocked",
    },
]


def test_the_fast_path_is_taken_with_the_pydantic_this_project_pins():
    assert outcome_constructor() is _fast_outcome


@pytest.mark.parametrize("values", CASES)
def test_a_fast_outcome_is_the_one_model_construct_builds(values):
    fast, slow = _fast_outcome(**values), RecipientOutcome.model_construct(**values)
    assert fast == slow
    assert fast.model_dump_json() == slow.model_dump_json()
    assert fast.model_fields_set == slow.model_fields_set
    assert RecipientOutcome.model_validate_json(fast.model_dump_json()) == RecipientOutcome.model_validate(values)
    with pytest.raises(ValueError, match="frozen"):
        fast.country = "SE"  # frozen like any contract


def test_an_event_of_fast_outcomes_serialises_as_one_of_validated_outcomes():
    common = {
        "event_id": "1f0d5c8e-3d0a-4c59-9a57-7a1bb2f0e6a1",
        "message_id": "6b7f4a52-2f8e-4c1e-9d0b-3a5c2e71d9f4",
        "project": "p",
        "tag": "T",
        "sender": "RSMS",
        "test": False,
        "currency": "NOK",
        "attempt": 1,
        "occurred_at": "2026-12-04T12:00:00Z",
        "replay": 0,
    }
    validated = OutcomeEvent.model_validate({**common, "outcomes": CASES})
    fast = validated.model_copy(update={"outcomes": [_fast_outcome(**values) for values in CASES]})
    assert fast.model_dump_json() == validated.model_dump_json()


def test_the_fast_event_path_is_taken_with_the_pydantic_this_project_pins():
    assert event_constructor() is _fast_event


def test_a_fast_event_is_the_one_model_construct_builds():
    fields = {
        "event_id": UUID("1f0d5c8e-3d0a-4c59-9a57-7a1bb2f0e6a1"),
        "message_id": UUID("6b7f4a52-2f8e-4c1e-9d0b-3a5c2e71d9f4"),
        "project": "p",
        "tag": "T",
        "sender": "RSMS",
        "test": False,
        "currency": "NOK",
        "attempt": 2,
        "replay": 1,
        "occurred_at": datetime(2026, 12, 4, 12, 0, tzinfo=UTC),
        "outcomes": [_fast_outcome(**values) for values in CASES],
    }
    fast, slow = _fast_event(**fields), _constructed_event(**fields)
    assert fast == slow
    assert fast.model_dump_json() == slow.model_dump_json()
    assert fast.model_fields_set == slow.model_fields_set
    validated = OutcomeEvent.model_validate_json(fast.model_dump_json())
    assert validated.model_dump_json() == fast.model_dump_json()
    with pytest.raises(ValueError, match="frozen"):
        fast.attempt = 3  # frozen like any contract
