"""The SMPP provider's decisions, without a socket: statuses, addresses, receipts."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from services.dispatcher.smpp.pdu import Deliver
from services.dispatcher.smpp.provider import source_address
from services.dispatcher.smpp.reports import is_receipt, parse_receipt
from services.dispatcher.smpp.status import Meaning, classify_bind, classify_submit, parse_status_map, status_name

NOW = datetime(2026, 11, 25, 5, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("status", "meaning"),
    [
        (0x00, Meaning.ACCEPTED),
        (0x58, Meaning.THROTTLED),
        (0x14, Meaning.THROTTLED),
        (0x0B, Meaning.INVALID),
        (0x50, Meaning.INVALID),
        (0x51, Meaning.INVALID),
        (0x0E, Meaning.AUTH_ERROR),
        (0x08, Meaning.TRANSIENT),
        (0x45, Meaning.TRANSIENT),
        (0x458, Meaning.TRANSIENT),
    ],
)
def test_submit_statuses(status: int, meaning: Meaning) -> None:
    assert classify_submit(status, {}) is meaning


def test_vendor_map_overrides() -> None:
    vendor = parse_status_map({"0x00000458": "no_credits", "1107": "blocked"})
    assert vendor == {0x458: Meaning.NO_CREDITS, 1107: Meaning.BLOCKED}
    assert classify_submit(0x458, vendor) is Meaning.NO_CREDITS
    assert classify_bind(0x458, vendor) is Meaning.NO_CREDITS
    with pytest.raises(ValueError):
        parse_status_map({"0x1": "nonsense"})


def test_bind_statuses() -> None:
    assert classify_bind(0, {}) is Meaning.ACCEPTED
    assert classify_bind(0x0E, {}) is Meaning.AUTH_ERROR
    assert classify_bind(0x0F, {}) is Meaning.AUTH_ERROR
    assert classify_bind(0x0D, {}) is Meaning.AUTH_ERROR
    assert classify_bind(0x08, {}) is Meaning.TRANSIENT
    assert status_name(0x58) == "ESME_RTHROTTLED (0x00000058)"


def test_source_addresses() -> None:
    assert source_address("RSMS") == ("RSMS", 5, 0)
    assert source_address("Shop 24") == ("Shop 24", 5, 0)
    assert source_address("+447700900001") == ("447700900001", 1, 1)
    assert source_address("12345") == ("12345", 1, 1)


def _receipt(text: bytes, esm_class: int = 4, tlvs: dict[int, bytes] | None = None) -> Deliver:
    return Deliver("447700900123", "RSMS", esm_class, 0, text, tlvs or {})


@pytest.mark.parametrize(
    ("stat", "status"),
    [
        ("DELIVRD", "delivered"),
        ("EXPIRED", "expired"),
        ("DELETED", "deleted"),
        ("UNDELIV", "undelivered"),
        ("ACCEPTD", "accepted"),
        ("UNKNOWN", "unknown"),
        ("REJECTD", "rejected"),
        ("WHATEVER", "unknown"),
    ],
)
def test_receipt_stat(stat: str, status: str) -> None:
    text = f"id:0A1B sub:001 dlvrd:001 submit date:2611250400 done date:2611250401 stat:{stat} err:000 text:hi"
    receipt = parse_receipt(_receipt(text.encode()), NOW)
    assert receipt is not None
    assert (receipt.carrier_id, receipt.status, receipt.error_code) == ("0A1B", status, None)
    assert receipt.done_at == datetime(2026, 11, 25, 4, 1, tzinfo=UTC)
    assert receipt.received_at == NOW


def test_receipted_message_id_tlv_wins_and_err_is_kept() -> None:
    text = b"id:123 sub:001 dlvrd:000 submit date:2611250400 done date:261125040130 stat:UNDELIV err:034"
    receipt = parse_receipt(_receipt(text, tlvs={0x1E: b"7b\0"}), NOW)
    assert receipt is not None
    assert (receipt.carrier_id, receipt.status, receipt.error_code) == ("7b", "undelivered", "034")
    assert receipt.done_at == datetime(2026, 11, 25, 4, 1, 30, tzinfo=UTC)


def test_message_state_tlv_when_the_text_has_no_stat() -> None:
    receipt = parse_receipt(_receipt(b"", tlvs={0x1E: b"x1\0", 0x0427: b"\x02"}), NOW)
    assert receipt is not None and receipt.status == "delivered" and receipt.done_at is None


def test_receipt_without_an_id_is_none_and_esm_class_bits() -> None:
    assert parse_receipt(_receipt(b"stat:DELIVRD"), NOW) is None
    assert is_receipt(0x04) and is_receipt(0x20) and is_receipt(0x44)
    assert not is_receipt(0x00) and not is_receipt(0x40) and not is_receipt(0x08)
