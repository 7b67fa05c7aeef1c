"""Metrics and probes on the ops port: the public API port serves no /metrics, the ops port
adds up every worker's counts, with the project (from the accounts file) as a label."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.ingest.conftest import StartIngest
from tests.support.accounts import add_project
from tests.support.ingest_server import PROJECT_ROOT

SEND = "/api/v1/sms/send"


def samples(text: str, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name:
                found[tuple(sorted(sample.labels.items()))] = sample.value
    return found


def test_metrics_are_on_the_ops_port_only_and_count_every_worker_by_project(
    start_ingest: StartIngest, accounts_file: Path
) -> None:
    acme = add_project(accounts_file, "acme")
    globex = add_project(accounts_file, "globex")
    served = start_ingest(workers=2)
    sends = [(acme.live_key, 3), (acme.test_key, 1), (globex.live_key, 2)]
    # New connections, so both workers take some of the 12 requests.
    for _ in range(2):
        for key, recipients in sends:
            answer = httpx.post(
                served.url + SEND,
                json={"tag": "billing", "recipients": [f"+474000000{i}" for i in range(recipients)], "message": "hi"},
                headers={"Authorization": f"Bearer {key}"},
                timeout=10,
            )
            assert answer.status_code == 200, answer.text
    assert httpx.get(served.url + "/metrics", timeout=5).status_code == 404

    text = httpx.get(served.ops_url + "/metrics", timeout=5).text
    assert samples(text, "rsms_ingest_accepted_recipients_total") == {
        (("project", "acme"), ("test", "no")): 6.0,
        (("project", "acme"), ("test", "yes")): 2.0,
        (("project", "globex"), ("test", "no")): 4.0,
    }
    assert samples(text, "rsms_ingest_requests_total")[(("code", "OK"), ("endpoint", SEND))] == 6.0
    assert httpx.get(served.ops_url + "/health/live", timeout=5).status_code == 200
    ready = httpx.get(served.ops_url + "/health/ready", timeout=5)
    assert ready.status_code == 200 and ready.json()["status"] == "ready"


def test_a_taken_ops_port_stops_ingest_before_it_serves(
    amqp_url: str, redis_url: str, accounts_file: Path, free_port
) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        taken = holder.getsockname()[1]
        env = {
            "PATH": "/usr/bin:/bin",
            "PYTHONPATH": str(PROJECT_ROOT),
            "RSMS_AMQP_URL": amqp_url,
            "RSMS_REDIS_URL": redis_url,
            "RSMS_ACCOUNTS_FILE": str(accounts_file),
            "RSMS_INGEST_PORT": str(free_port()),
            "RSMS_INGEST_OPS_PORT": str(taken),
        }
        finished = subprocess.run(
            [sys.executable, "-m", "cli", "ingest"], cwd=PROJECT_ROOT, env=env, capture_output=True, timeout=60
        )
    assert finished.returncode != 0
    assert b"Address already in use" in finished.stderr or b"address already in use" in finished.stderr.lower()
