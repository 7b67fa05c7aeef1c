"""One server worker dying must not end the service: the supervisor starts another."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import httpx

from tests.ingest.conftest import StartIngest
from tests.support.accounts import add_project
from tests.support.rsms_up import alive, eventually


def test_a_worker_killed_with_sigkill_is_respawned_and_the_api_keeps_answering(
    start_ingest: StartIngest, accounts_file: Path
) -> None:
    keys = add_project(accounts_file)
    served = start_ingest(workers=2)
    workers = eventually(lambda: len(pids := served.worker_pids()) == 2 and pids, "two workers")
    victim = workers[0]
    os.kill(victim, signal.SIGKILL)

    # The other worker answers meanwhile; a new one takes the dead one's place.
    respawned = eventually(
        lambda: (pids := served.worker_pids()) and len(pids) == 2 and victim not in pids and pids,
        "the dead worker to be replaced",
        timeout=30,
    )
    assert served.process.poll() is None, served.log()[-3000:]
    assert not alive(victim)
    time.sleep(1)
    payload = {"tag": "billing", "recipients": ["+4712345678"], "message": "hi"}
    headers = {"Authorization": f"Bearer {keys.live_key}"}
    for _ in range(20):  # new connections each: the kernel spreads them over both workers
        response = httpx.post(f"{served.url}/api/v1/sms/send", json=payload, headers=headers, timeout=10)
        assert response.status_code == 200, response.text
    assert all(alive(pid) for pid in respawned)


def test_sigterm_stops_the_server_and_its_workers_cleanly(start_ingest: StartIngest) -> None:
    served = start_ingest(workers=2)
    workers = eventually(lambda: len(pids := served.worker_pids()) == 2 and pids, "two workers")
    os.killpg(served.process.pid, signal.SIGTERM)  # as `rsms up` and orchestrators stop it
    assert served.process.wait(20) == 0
    assert not any(alive(pid) for pid in workers)
    # No traceback on the way out (see the ops loop's `stop` in services/ingest/main.py).
    assert "Traceback" not in served.log(), served.log()[-3000:]
