"""`rsms up --provider smpp`: the whole gateway sending through the simulator's SMPP face.

A message goes in over HTTP, leaves the dispatcher as submit_sm (part by part, as billed),
the simulator's SMPP face answers and sends a delivery receipt as a deliver_sm, and the
API shows each recipient `delivered`.
"""

from __future__ import annotations

import signal
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from shared import accounts as store
from tests.support.rsms_up import PORT_NAMES, Gateway, eventually, rsms_up_runner

pytestmark = pytest.mark.slow

SIM_ADMIN = {"Authorization": "Bearer sim-token"}  # the simulator's default token
LONG = "Your parcel is on its way and will be delivered tomorrow between 08:00 and 12:00. " * 2  # 2 parts


@pytest.fixture
def gateway(
    tmp_path: Path, amqp_url: str, redis_url: str, free_port: Callable[[], int]
) -> Iterator[tuple[Callable[..., Gateway], dict[str, int]]]:
    ports = {name: free_port() for name in (*PORT_NAMES, "smpp")}
    with rsms_up_runner(tmp_path, amqp_url, redis_url, ports, {"RSMS_SMPP_PORT": str(ports["smpp"])}) as start:
        yield start, ports


def test_rsms_up_with_the_smpp_provider_sends_and_shows_delivered(
    gateway: tuple[Callable[..., Gateway], dict[str, int]], tmp_path: Path
) -> None:
    start, ports = gateway
    up = start("--provider", "smpp")
    up.wait_for(r"Bearer (sk_test_[A-Za-z0-9]{40})")
    up.wait_for(r"RSMS Gateway is up")
    api = f"http://127.0.0.1:{ports['ingest']}"
    sim = f"http://127.0.0.1:{ports['sim']}"

    with store.editing(tmp_path / "var" / "accounts.toml") as data:
        _, live_key = store.issue_key(data, "demo", "live")
    headers = {"Authorization": f"Bearer {live_key}"}
    eventually(
        lambda: httpx.post(f"{api}/api/v1/sms/send", headers=headers, content=b"{}").status_code == 400,
        "the new key to be loaded",
    )
    time.sleep(2)  # each ingest worker re-reads the file within a second: let the other one catch up too

    sent = {}
    for recipients, message, segments in (
        (["+4712345678", "+4787654321"], "Hello over SMPP", 1),
        (["+46701234567"], LONG, 2),
    ):
        response = httpx.post(
            f"{api}/api/v1/sms/send",
            headers=headers,
            json={"tag": "demo", "recipients": recipients, "message": message},
        )
        assert response.status_code == 200, response.text
        assert response.json()["data"]["smsSegmentsPerRecipient"] == segments
        sent[response.json()["data"]["messageId"]] = (recipients, segments)

    # At the SMSC: each recipient once, in exactly the parts it was billed for.
    expected = Counter({r.removeprefix("+"): n for recipients, n in sent.values() for r in recipients})
    parts = eventually(
        lambda: (
            (m := httpx.get(f"{sim}/admin/smpp/messages", headers=SIM_ADMIN).json())
            and len(m) >= sum(expected.values())
            and m
        ),
        "every part at the simulator's SMPP face",
    )
    assert Counter(p["destination"] for p in parts) == expected
    assert {(p["source"], p["data_coding"]) for p in parts} == {("RSMS", 0)}

    # The receipts come back as deliver_sm: every recipient delivered, in the API.
    for message_id, (recipients, segments) in sent.items():

        def delivered(message_id: str = message_id) -> dict[str, Any] | None:
            response = httpx.get(f"{api}/api/v1/sms/{message_id}", headers=headers)
            body = response.json().get("data") if response.status_code == 200 else None
            ok = body and body["recipients"] and all(r["deliveryStatus"] == "delivered" for r in body["recipients"])
            return body if ok else None

        data = eventually(delivered, f"message {message_id} delivered", timeout=90)
        assert sorted(r["recipient"] for r in data["recipients"]) == sorted(recipients)
        assert all(r["smsSegments"] == segments for r in data["recipients"])
    stats = httpx.get(f"{sim}/admin/stats", headers=SIM_ADMIN).json()
    assert stats["smpp_receipts_delivered"] == sum(expected.values()) and not stats.get("smpp_refused")

    # An MO message from a handset, injected for development, is taken by the dispatcher.
    inbound = httpx.post(
        f"{sim}/admin/smpp/inbound", headers=SIM_ADMIN, json={"from": "+4712345678", "to": "RSMS", "text": "Hi"}
    )
    assert inbound.json() == {"deliver_sm_resp_status": 0}

    up.process.send_signal(signal.SIGINT)
    assert up.process.wait(40) == 0
    assert live_key not in "\n".join(up.lines)
