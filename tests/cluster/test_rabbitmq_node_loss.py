"""The gateway on a 3-node RabbitMQ cluster: a node killed (kill -9) under steady load.

`rsms up` runs the whole gateway (ingest, dispatcher, ledger, webhooks, the provider
simulator) with `RSMS_AMQP_URL` listing the three nodes. A client sends steadily (retrying
a refused request with its Idempotency-Key, as the API asks); one node is killed:

a. the node most of the services are connected to;
b. the node leading the work queue (`rsms.dispatch.jobs`).

Counted afterwards, and asserted: every accepted recipient reached the provider exactly
once (the simulator's deduplication is off, so a resend would be a second delivery) and is
billed once in the ledger's ClickHouse. Timings are printed, not asserted: the longest
pause in deliveries after the kill ("sending resumed after") and in accepted requests
(RabbitMQ 3.10 sometimes nacks publishes to a quorum queue for a minute after its leader
died: README, "Running on a RabbitMQ cluster").
The figures go to stdout as one JSON line (`pytest -s`).
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from shared import accounts as store
from tests.support.fault_load import (
    SIM_ADMIN,
    DeliveryWatch,
    Load,
    delivered_references,
    delivery_times,
    longest_pause_after,
    ready,
    rsms_sql,
)
from tests.support.rabbit_cluster import Node, RabbitCluster, rabbit_cluster
from tests.support.redis_server import RedisServer
from tests.support.rsms_up import PORT_NAMES, Gateway, eventually, rsms_up_runner

PROJECT_ROOT = Path(__file__).resolve().parents[2]
VHOST = "rsms-cluster"
RECIPIENTS_PER_REQUEST = 5
SECONDS_BEFORE_KILL = 12.0
SECONDS_AFTER_KILL = 25.0
REQUEST_INTERVAL = 0.1


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def cluster() -> Iterator[RabbitCluster]:
    with rabbit_cluster() as built:
        built.add_vhost(VHOST)
        yield built


def run_scenario(cluster: RabbitCluster, tmp_path: Path, scenario: str) -> None:
    urls = cluster.urls(VHOST)
    redis = RedisServer(free_port(), tmp_path / "redis", appendonly=True).start()
    ports = {name: free_port() for name in PORT_NAMES}
    gateway_dir = tmp_path / "gateway"
    gateway_dir.mkdir()
    up: Gateway | None = None
    try:
        # The load is steady, not a burst: the per-key and per-tag rate limits stay out of it.
        limits = {"RSMS_REQUESTS_PER_MINUTE": "100000", "RSMS_TAG_REQUESTS_PER_MINUTE": "100000"}
        with rsms_up_runner(gateway_dir, urls, redis.url, ports, limits) as start:
            up = start()
            up.wait_for(r"RSMS Gateway is up", timeout=180)
            with store.editing(gateway_dir / "var" / "accounts.toml") as data:
                _, key = store.issue_key(data, "demo", "live")
                store.set_tag(data, "demo", "load", "RSMS")
            api = f"http://127.0.0.1:{ports['ingest']}"
            sim = f"http://127.0.0.1:{ports['sim']}"
            # A resend must show as a second delivery, not be absorbed by the simulator.
            httpx.post(f"{sim}/admin/faults", headers=SIM_ADMIN, json={"deduplicate": False}).raise_for_status()
            eventually(
                lambda: (
                    httpx.post(
                        f"{api}/api/v1/sms/send", headers={"Authorization": f"Bearer {key}"}, content=b"{}"
                    ).status_code
                    == 400
                ),
                "the live key loaded",
            )
            time.sleep(2)  # every ingest worker re-reads the accounts file within a second
            service_ports = {
                "ingest": ports["ingest_ops"],
                "dispatcher": ports["dispatcher"],
                "ledger": ports["ledger"],
            }
            eventually(lambda: all(ready(p) for p in service_ports.values()), "every service ready", timeout=120)

            load = Load(api, key, recipients_per_request=RECIPIENTS_PER_REQUEST, interval=REQUEST_INTERVAL)
            watch = DeliveryWatch(sim)
            watcher = threading.Thread(target=watch.run, daemon=True)
            load.start()
            watcher.start()
            time.sleep(SECONDS_BEFORE_KILL)

            if scenario == "connected":
                counts = cluster.connected_nodes(VHOST)
                victim: Node = cluster.node_named(max(counts, key=lambda name: counts[name]))
                chosen = f"{victim.name} held {counts[victim.name]} of {sum(counts.values())} connections"
            else:
                victim = cluster.queue_leader(VHOST, "rsms.dispatch.jobs")
                chosen = f"{victim.name} led rsms.dispatch.jobs"
            accepted_before = len(load.accepted)
            killed_at = time.monotonic()
            cluster.kill(victim)
            # Readiness: each service is ready again (on a surviving node, consumers back).
            try:
                eventually(
                    lambda: all(ready(p) for p in service_ports.values()), "every service ready again", timeout=90
                )
            except AssertionError:
                unready = [name for name, port in service_ports.items() if not ready(port)]
                raise AssertionError(f"not ready 90 s after the kill: {unready}") from None
            ready_again = time.monotonic() - killed_at
            time.sleep(max(0.0, SECONDS_AFTER_KILL - (time.monotonic() - killed_at)))
            load.finish()
            accepted_after = len(load.accepted) - accepted_before

            # Everything accepted reaches the provider: once per recipient.
            expected = load.expected()

            def delivered() -> Counter[str] | None:
                found = delivered_references(sim)
                return found if expected.keys() <= found.keys() else None

            try:
                found = eventually(delivered, "every accepted recipient at the provider", timeout=120)
            except AssertionError:
                found = delivered_references(sim)
            watch.stop.set()
            watcher.join(10)
            load_ended = killed_at + SECONDS_AFTER_KILL
            lost = len(expected.keys() - found.keys())
            sent_twice = sum(1 for reference, n in found.items() if n > 1)

            # Billed: one `sent` row per recipient in the ledger (ClickHouse), no more. Only
            # this test's live traffic is billed in this ledger.
            total = len(expected)

            def billing() -> dict[str, Any]:
                return rsms_sql(
                    urls,
                    "SELECT count() AS billed, countIf(c > 1) AS twice FROM (SELECT message_id, recipient, "
                    "count() AS c FROM rsms.sms_outcomes FINAL WHERE status = 'sent' AND NOT test "
                    "GROUP BY message_id, recipient)",
                )[0]

            try:
                bill = eventually(
                    lambda: (b := billing()) and int(b["billed"]) >= total and b, "all billed", timeout=120
                )
            except AssertionError:
                bill = billing()
            billed_twice = int(bill["twice"])
            not_billed = total - int(bill["billed"])

            figures = {
                "scenario": scenario,
                "killed": chosen,
                "requests_accepted": len(load.accepted),
                "accepted_after_kill": accepted_after,
                "requests_refused_then_retried": dict(load.refused),
                "recipients_accepted": total,
                "recipients_delivered_once": sum(1 for reference in expected if found.get(reference) == 1),
                "lost": lost,
                "sent_twice": sent_twice,
                "billed_twice": billed_twice,
                "not_billed": not_billed,
                "sending_resumed_after_s": round(
                    longest_pause_after(delivery_times(watch.samples), killed_at, load_ended), 1
                ),
                "accepting_resumed_after_s": round(
                    longest_pause_after([when for _, when in load.accepted.values()], killed_at, load_ended), 1
                ),
                "all_ready_again_after_s": round(ready_again, 1),
                "webhooks_ready_at_end": ready(ports["webhooks"]),
                "load_average": [round(x, 2) for x in os.getloadavg()],
            }
            print("\nCLUSTER_FIGURES " + json.dumps(figures), flush=True)
            assert (lost, sent_twice, billed_twice, not_billed) == (0, 0, 0, 0), figures
    finally:
        if up is not None:
            (tmp_path / "gateway.log").write_text("\n".join(up.lines))  # kept by pytest, for a look
        redis.stop()


def test_killing_the_node_the_services_are_connected_to_loses_and_repeats_nothing(
    cluster: RabbitCluster, tmp_path: Path
) -> None:
    run_scenario(cluster, tmp_path, "connected")


def test_killing_the_work_queue_leader_loses_and_repeats_nothing(cluster: RabbitCluster, tmp_path: Path) -> None:
    run_scenario(cluster, tmp_path, "leader")
