"""The signature scheme (shared decision, README "Webhooks") and the README's snippet that
verifies it: a request the sender signs passes; anything changed, or too old, does not."""

from __future__ import annotations

import hashlib
import hmac
import time
import uuid
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.webhooks.signing import request_body, signature, signed_headers
from shared.contracts import WebhookEvent
from tests.webhooks.receiver import readme_verifier

SECRET = "whsec_0123456789abcdef"
verify = readme_verifier()


def event(text: str = "Hei på deg") -> WebhookEvent:
    now = datetime.now(UTC)
    return WebhookEvent(
        id=uuid.uuid4(),
        type="message.inbound",
        project="acme",
        status="received",
        occurred_at=now,
        created_at=now,
        from_="+4798765432",
        to="2222",
        text=text,
    )


def test_the_signature_is_v1_hex_hmac_sha256_of_timestamp_dot_body() -> None:
    body = b'{"events":[]}'
    expected = hmac.new(SECRET.encode(), b"1700000000." + body, hashlib.sha256).hexdigest()
    assert signature(SECRET, 1_700_000_000, body) == "v1=" + expected


def test_headers_carry_timestamp_signature_and_delivery_id() -> None:
    delivery = uuid.uuid4()
    headers = signed_headers(SECRET, 1_700_000_000, b"{}", delivery)
    assert headers["X-RSMS-Timestamp"] == "1700000000"
    assert headers["X-RSMS-Signature"] == signature(SECRET, 1_700_000_000, b"{}")
    assert headers["X-RSMS-Delivery"] == str(delivery)
    assert headers["Content-Type"] == "application/json"


@given(st.text(max_size=200))
def test_the_readme_snippet_verifies_what_the_sender_signs(text: str) -> None:
    sent = event(text)
    body = request_body([sent])
    now = int(time.time())
    [received] = verify(SECRET, signed_headers(SECRET, now, body, uuid.uuid4()), body)
    assert received == sent.wire()


def test_the_readme_snippet_refuses_a_changed_body_a_wrong_secret_and_an_old_timestamp() -> None:
    body = request_body([event()])
    now = int(time.time())
    headers = signed_headers(SECRET, now, body, uuid.uuid4())
    with pytest.raises(ValueError, match="signature"):
        verify(SECRET, headers, body.replace(b"acme", b"evil"))
    with pytest.raises(ValueError, match="signature"):
        verify("whsec_another_secret_", headers, body)
    old = signed_headers(SECRET, now - 301, body, uuid.uuid4())
    with pytest.raises(ValueError, match="timestamp"):
        verify(SECRET, old, body)
    with pytest.raises(ValueError, match="timestamp"):
        verify(SECRET, {k: v for k, v in headers.items() if k != "X-RSMS-Timestamp"}, body)
    # Header names are case-insensitive, as HTTP has them.
    assert verify(SECRET, {k.lower(): v for k, v in headers.items()}, body)
