"""The API as the real server (uvicorn, `http_server.py`) serves it: raw HTTP framing, header lines as sent,
slow and broken clients. What the in-process test client cannot show."""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path

import httpx

from tests.ingest.conftest import StartIngest
from tests.support.accounts import add_project
from tests.support.ingest_server import ServedIngest, raw_request, read_answer

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


def head(key: str | None, framing: str) -> bytes:
    auth = f"Authorization: Bearer {key}\r\n" if key else ""
    return (
        f"POST {SEND} HTTP/1.1\r\nHost: gateway\r\n{auth}Content-Type: application/json\r\n{framing}\r\n\r\n"
    ).encode()


def status_and_body(answer: bytes) -> tuple[int, dict[str, object]]:
    head_part, _, body = answer.partition(b"\r\n\r\n")
    return int(head_part.split()[1]), json.loads(body)


def counted(served: ServedIngest) -> dict[str, float]:
    """`rsms_ingest_requests_total` of the send endpoint, by code."""
    counts = {}
    for line in httpx.get(served.ops_url + "/metrics", timeout=5).text.splitlines():
        if line.startswith("rsms_ingest_requests_total{") and SEND in line:
            code = line.split('code="')[1].split('"')[0]
            counts[code] = float(line.rsplit(" ", 1)[1])
    return counts


def test_broken_bodies_are_validation_errors_and_a_client_that_left_is_no_error(
    start_ingest: StartIngest, accounts_file: Path
) -> None:
    keys = add_project(accounts_file)
    served = start_ingest()
    # Malformed chunked framing: the client is still there and reads a 400.
    answer = raw_request(served.port, head(keys.live_key, "Transfer-Encoding: chunked") + b"ZZ\r\nabc\r\n0\r\n\r\n")
    status, body = status_and_body(answer)
    assert status == 400 and body["error"]["code"] == "VALIDATION_ERROR", body  # type: ignore[index]
    # A client that sends half its body and leaves.
    for _ in range(3):
        with socket.create_connection(("127.0.0.1", served.port)) as sock:
            sock.sendall(head(keys.live_key, "Content-Length: 100") + b'{"tag"')
            time.sleep(0.2)
    time.sleep(0.5)
    assert "INTERNAL_ERROR" not in counted(served)
    assert "unexpected_error" not in served.log()


def test_unauthenticated_request_with_a_body_that_never_finishes_gets_401_at_once(
    start_ingest: StartIngest, accounts_file: Path
) -> None:
    add_project(accounts_file)
    served = start_ingest(body_timeout_seconds="60")
    for key in (None, "sk_live_" + "x" * 40):
        with socket.create_connection(("127.0.0.1", served.port), timeout=10) as sock:
            # Declares 100 bytes, sends one, and would trickle the rest for ever.
            sock.sendall(head(key, "Content-Length: 100") + b"{")
            answer = read_answer(sock)  # within the socket timeout: not after the body timeout
        status, body = status_and_body(answer)
        assert status == 401 and body["error"]["code"] == "UNAUTHORIZED", body  # type: ignore[index]


def test_a_keyed_body_that_never_finishes_is_cut_after_the_body_timeout(
    start_ingest: StartIngest, accounts_file: Path
) -> None:
    keys = add_project(accounts_file)
    served = start_ingest(body_timeout_seconds="1")
    with socket.create_connection(("127.0.0.1", served.port), timeout=30) as sock:
        sock.sendall(head(keys.live_key, "Content-Length: 100") + b"{")
        answer = read_answer(sock)
    status, body = status_and_body(answer)
    assert status == 408, body
    assert body["error"] == {  # type: ignore[comparison-overlap]
        "code": "VALIDATION_ERROR",
        "message": "Request body not received within 1 seconds",
    }
    # A Content-Length over the limit is refused before the key is even looked at.
    answer = raw_request(served.port, head(None, "Content-Length: 2000000"))
    assert status_and_body(answer)[0] == 413
