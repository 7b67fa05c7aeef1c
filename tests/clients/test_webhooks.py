"""`verify_webhook`: a request signed as the shared decision says passes; a changed body,
a wrong secret or an old timestamp does not. The signatures here are computed from the
decision's own words, not with the SDK's signing function."""

from __future__ import annotations

import hashlib
import hmac
import json
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rsms_client import WebhookVerificationError, sign_webhook, verify_webhook

SECRET = "whsec_3b1f0c9e8d7a6b5c4d3e2f1a"
EVENT = {
    "id": "evt_01",
    "type": "message.delivered",
    "project": "acme",
    "messageId": "550e8400-e29b-41d4-a716-446655440000",
    "recipient": "+4712345678",
    "status": "delivered",
    "errorCode": None,
    "occurredAt": "2026-12-04T07:00:00.000Z",
    "createdAt": "2026-12-04T07:00:01.000Z",
    "test": False,
}
INBOUND = {
    "id": "evt_02",
    "type": "message.inbound",
    "project": "acme",
    "from": "+4798765432",
    "to": "2222",
    "text": "STOP",
    "status": None,
    "errorCode": None,
    "occurredAt": "2026-12-04T07:00:02.000Z",
    "createdAt": "2026-12-04T07:00:02.500Z",
    "test": False,
}


def signed(body: bytes, timestamp: int, secret: str = SECRET) -> tuple[str, str]:
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return str(timestamp), f"v1={digest}"


def test_a_signed_fresh_request_gives_its_events() -> None:
    body = json.dumps({"events": [EVENT, INBOUND]}).encode()
    timestamp, signature = signed(body, int(time.time()))
    delivered, inbound = verify_webhook(SECRET, timestamp, signature, body)
    assert (delivered.type, delivered.message_id, delivered.recipient, delivered.status) == (
        "message.delivered",
        EVENT["messageId"],
        "+4712345678",
        "delivered",
    )
    assert delivered.occurred_at is not None and delivered.occurred_at.tzinfo is not None
    assert (inbound.from_, inbound.to, inbound.text, inbound.message_id) == ("+4798765432", "2222", "STOP", None)
    assert sign_webhook(SECRET, int(timestamp), body) == signature


def test_one_valid_signature_of_several_is_enough() -> None:
    body = json.dumps({"events": [EVENT]}).encode()
    timestamp, signature = signed(body, int(time.time()))
    _, old = signed(body, int(timestamp), secret="whsec_old")
    assert len(verify_webhook(SECRET, timestamp, f"{old}, {signature}", body)) == 1


@pytest.mark.parametrize(
    "change",
    [
        pytest.param(lambda body, ts, sig: (body.replace(b"delivered", b"failed"), ts, sig), id="body changed"),
        pytest.param(lambda body, ts, sig: (body, str(int(ts) + 1), sig), id="timestamp changed"),
        pytest.param(lambda body, ts, sig: (body, ts, sig.replace("v1=", "v0=")), id="other scheme"),
        pytest.param(lambda body, ts, sig: (body, ts, sig[:-1] + ("0" if sig[-1] != "0" else "1")), id="one digit"),
        pytest.param(lambda body, ts, sig: (body, ts, ""), id="no signature"),
        pytest.param(lambda body, ts, sig: (body, None, sig), id="no timestamp"),
        pytest.param(lambda body, ts, sig: (body, "yesterday", sig), id="timestamp not a number"),
    ],
)
def test_a_tampered_request_is_refused(change) -> None:
    body = json.dumps({"events": [EVENT]}).encode()
    timestamp, signature = signed(body, int(time.time()))
    body, timestamp, signature = change(body, timestamp, signature)
    with pytest.raises(WebhookVerificationError):
        verify_webhook(SECRET, timestamp, signature, body)


def test_a_wrong_secret_is_refused() -> None:
    body = json.dumps({"events": [EVENT]}).encode()
    timestamp, signature = signed(body, int(time.time()), secret="whsec_somebody_else")
    with pytest.raises(WebhookVerificationError, match="signature"):
        verify_webhook(SECRET, timestamp, signature, body)


@pytest.mark.parametrize("age", [-301, 301, 3600])
def test_a_stale_or_future_request_is_refused_even_when_signed(age: int) -> None:
    body = json.dumps({"events": [EVENT]}).encode()
    timestamp, signature = signed(body, int(time.time()) - age)
    with pytest.raises(WebhookVerificationError, match="timestamp"):
        verify_webhook(SECRET, timestamp, signature, body)
    assert verify_webhook(SECRET, timestamp, signature, body, tolerance=abs(age) + 60)  # within a wider tolerance


@given(st.binary(max_size=300), st.binary(min_size=1, max_size=40))
def test_any_body_signed_verifies_only_unchanged(body: bytes, flip: bytes) -> None:
    wrapped = json.dumps({"events": [], "pad": body.hex()}).encode()
    timestamp, signature = signed(wrapped, int(time.time()))
    assert verify_webhook(SECRET, timestamp, signature, wrapped) == []
    with pytest.raises(WebhookVerificationError):
        verify_webhook(SECRET, timestamp, signature, wrapped + flip)
