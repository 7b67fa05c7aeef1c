"""The API as the real server (Granian) serves it: raw HTTP framing, header lines as sent,
slow and broken clients. What the in-process test client cannot show."""

from __future__ import annotations

import json
from pathlib import Path

import httpx

from tests.ingest.conftest import StartIngest
from tests.support.accounts import add_project

SEND = "/api/v1/sms/send"
PAYLOAD = {"tag": "billing", "recipients": ["+4712345678"], "message": "hi"}


def test_forwarded_for_split_over_two_lines_cannot_forge_the_client_address(
    start_ingest: StartIngest, accounts_file: Path
) -> None:
    """The client sends its own X-Forwarded-For line with an allowed address; our proxy (the
    socket peer, 127.0.0.1, trusted) adds a second line with the real client. Only the
    proxy's hop is believed."""
    walled = add_project(accounts_file, "walled", allowlist=["203.0.113.0/24"])
    served = start_ingest(trusted_proxies='["127.0.0.0/8"]')
    auth = ("Authorization", f"Bearer {walled.live_key}")
    body = json.dumps(PAYLOAD).encode()
    json_type = ("Content-Type", "application/json")

    def send(*forwarded: str) -> httpx.Response:
        headers = [auth, json_type, *(("X-Forwarded-For", line) for line in forwarded)]
        return httpx.post(served.url + SEND, content=body, headers=headers, timeout=10)

    forged = send("203.0.113.7", "198.51.100.9")
    assert forged.status_code == 403, forged.text
    assert forged.json()["error"]["code"] == "IP_NOT_WHITELISTED"
    # The same chain on one line, and a chain of our own proxies, are read the same way.
    assert send("203.0.113.7, 198.51.100.9").json()["error"]["code"] == "IP_NOT_WHITELISTED"
    allowed = send("198.51.100.9", "203.0.113.7")
    assert allowed.status_code == 200, allowed.text
    assert send("203.0.113.7", "127.0.0.5").status_code == 200
