"""`AcceptedJob` is `SmsJob` on the wire: the same fields, the same bytes."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import msgspec
import pytest

from services.ingest.accepted_job import AcceptedJob, job_json
from shared.contracts import SmsJob


def _fields(**changes: Any) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "message_id": uuid.UUID("0b9f8f0e-5a3c-4d2e-9c1b-7e6d5c4b3a21"),
        "project": "acme",
        "key_id": "key_1",
        "tag": "alerts",
        "sender": "ACME",
        "recipients": ["+4790000001", "+4670000002"],
        "message": "Your code is 123456",
        "encoding": "GSM-7",
        "segments": 1,
        "prices": {"NO": Decimal("0.55"), "SE": Decimal("0.72")},
        "default_price": Decimal("0.67"),
        "currency": "NOK",
        "estimated_cost": Decimal("1.27"),
        "test": False,
        "store_body": True,
        "accepted_at": datetime(2026, 12, 4, 21, 49, 23, 276504, tzinfo=UTC),
    }
    return fields | changes


CASES = {
    "plain": _fields(),
    "whole second": _fields(accepted_at=datetime(2026, 12, 4, 21, 49, 23, tzinfo=UTC)),
    "milliseconds": _fields(accepted_at=datetime(2026, 1, 2, 3, 4, 5, 6000, tzinfo=UTC)),
    "ucs-2 and escapes": _fields(
        encoding="UCS-2",
        segments=3,
        message='Hei \U0001f600 "quoted" \\ back/slash\n\ttab \x00\x1f\x7f \u2028 æøå Привет',
    ),
    "test, no body kept, no prices": _fields(test=True, store_body=False, prices={}),
    "decimals as given": _fields(
        default_price=Decimal("0.670"),
        estimated_cost=Decimal("0E-7"),
        prices={"US": Decimal("1E+1"), "DE": Decimal("0.0000001")},
    ),
    "one recipient": _fields(recipients=["+4790000001"], estimated_cost=Decimal("0.55")),
    "retry and replay": _fields(attempt=3, replay=2),
}


@pytest.mark.parametrize("fields", CASES.values(), ids=CASES.keys())
def test_the_same_json_as_the_contracts_model(fields: dict[str, Any]) -> None:
    assert job_json(AcceptedJob(**fields)) == SmsJob(**fields).model_dump_json().encode()


@pytest.mark.parametrize("fields", CASES.values(), ids=CASES.keys())
def test_consumers_read_it_as_the_job(fields: dict[str, Any]) -> None:
    assert SmsJob.model_validate_json(job_json(AcceptedJob(**fields))) == SmsJob(**fields)


def test_the_same_fields_in_the_same_order_with_the_same_defaults() -> None:
    # A field added to the contract fails here until `AcceptedJob` has it too.
    assert AcceptedJob.__struct_fields__ == tuple(SmsJob.model_fields)
    assert msgspec.structs.asdict(AcceptedJob(**_fields())) == SmsJob(**_fields()).model_dump()
