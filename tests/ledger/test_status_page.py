"""The status page on the ledger's ops port: each service's health, the provider circuit,
queue depths and dead letters, live recipients per minute over the last hour; rendered
by headless Chromium, with nothing fetched from anywhere."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path

import httpx
import pytest
from redis.asyncio import Redis

from services.ledger.status import CHART_MINUTES, MinuteCounts, ServiceHealth, StatusSnapshot, minute_series
from services.ledger.status_page import render_status_page
from shared.provider_state import ProviderState, write_provider_state
from shared.topology import DEAD_LETTER_QUEUE
from tests.ledger.support import (
    eventually,
    ledger_settings,
    make_job,
    make_outcome,
    numbers,
    publish_job,
    publish_outcome,
    publisher,
    running_ledger,
    scalar,
)
from tests.support.chromium_page import dump_dom, screenshot

NOW = datetime(2026, 12, 4, 10, 30, 42, tzinfo=UTC)


class Resources(HTMLParser):
    """Every URL the page would load: src, href, and url(…) in styles."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.urls += [value or "" for name, value in attrs if name in ("src", "href", "action", "poster")]


def snapshot(**changes: object) -> StatusSnapshot:
    values: dict[str, object] = {
        "generated_at": NOW,
        "services": [ServiceHealth("ingest", "ready", "http://127.0.0.1:8083")],
        "provider": "ok",
        "queues": [],
        "traffic": minute_series({}, NOW),
    }
    values.update(changes)
    return StatusSnapshot(**values)  # type: ignore[arg-type]


def test_the_chart_has_every_minute_of_the_last_hour_zero_where_nothing_happened() -> None:
    last = NOW.replace(second=0)
    series = minute_series({last: (5, 4, 1), last - timedelta(minutes=59): (2, 2, 0)}, NOW)
    assert len(series) == CHART_MINUTES
    assert series[0] == MinuteCounts(last - timedelta(minutes=59), 2, 2, 0)
    assert series[-1] == MinuteCounts(last, 5, 4, 1)
    assert sum(m.accepted for m in series[1:-1]) == 0


def test_the_page_loads_nothing_and_escapes_what_it_shows() -> None:
    page = render_status_page(
        snapshot(services=[ServiceHealth("<script>x</script>", "unreachable", "http://h/?a=1&b=2")]), 10
    )
    parser = Resources()
    parser.feed(page)
    assert parser.urls == []
    assert "<script>" not in page and "&lt;script&gt;" in page
    assert "default-src 'none'" in page and '<meta http-equiv="refresh" content="10">' in page
    for series in ("accepted", "sent", "failed"):
        points = re.search(rf'id="line-{series}"[^>]*points="([^"]+)"', page)
        assert points is not None and len(points.group(1).split()) == CHART_MINUTES


def test_an_open_circuit_and_an_unanswering_clickhouse_are_shown_as_such() -> None:
    page = render_status_page(snapshot(provider="no_credits", traffic=None), 10)
    assert "OPEN" in page and "no credit" in page
    assert "ClickHouse did not answer" in page


@pytest.fixture
async def gateway_state(amqp_url, redis_url, clickhouse, free_port):
    """A running ledger holding live and test traffic, with the provider circuit open, one
    dead letter waiting, a dispatcher that does not answer; yields the ops port."""
    settings = ledger_settings(
        amqp_url,
        clickhouse.dsn,
        clickhouse.database,
        redis_url=redis_url,
        ledger_status_services={"dispatcher": f"http://127.0.0.1:{free_port()}"},
        ledger_status_refresh_seconds=5,
    )
    redis = Redis.from_url(redis_url)
    live = make_job(recipients=numbers(5))
    test = make_job(recipients=numbers(7, start=41_000_000), test=True)
    client = clickhouse.client()
    try:
        async with running_ledger(settings), publisher(amqp_url) as broker:
            for job in (live, test):
                await publish_job(broker, job)
            await publish_outcome(broker, make_outcome(live, status="sent", recipients=live.recipients[:3]))
            await publish_outcome(broker, make_outcome(live, status="failed", recipients=live.recipients[3:]))
            await publish_outcome(broker, make_outcome(test, status="sent"))
            await broker.publish(b'{"dead": "letter"}', queue=DEAD_LETTER_QUEUE.name, persist=True)
            await write_provider_state(redis, ProviderState.NO_CREDITS, ttl_seconds=300)
            await eventually(
                lambda: scalar(client, f"SELECT count() FROM {clickhouse.database}.sms_outcomes") == 12,
                what="every outcome recorded",
            )
            yield settings.ledger_http_port
    finally:
        await redis.aclose()


async def test_the_status_page_shows_health_circuit_queues_and_live_traffic(gateway_state, tmp_path: Path):
    base = f"http://127.0.0.1:{gateway_state}"
    async with httpx.AsyncClient() as http:
        status = (await http.get(base + "/status.json")).json()
        page = await http.get(base + "/status")
    assert page.headers["content-type"].startswith("text/html")
    assert {s["name"]: s["state"] for s in status["services"]} == {"dispatcher": "unreachable", "ledger": "ready"}
    assert status["provider"] == "no_credits"
    depths = {q["name"]: q["depth"] for q in status["queues"]}
    assert depths["rsms.dispatch.dead"] == 1 and depths["rsms.ledger.accepted"] == 0
    traffic = status["traffic"]
    assert len(traffic) == CHART_MINUTES
    # Live traffic only: the 7 test recipients are not counted.
    assert sum(m["accepted"] for m in traffic) == 5
    assert (sum(m["sent"] for m in traffic), sum(m["failed"] for m in traffic)) == (3, 2)

    dom = await dump_dom(base + "/status", tmp_path / "profile")
    assert "RSMS Gateway status" in dom
    assert re.search(r"dispatcher</td><td><span class=\"badge bad\">unreachable", dom)
    assert re.search(r"ledger</td><td><span class=\"badge good\">ready", dom)
    assert 'class="badge bad">OPEN</span>' in dom
    assert re.search(r'rsms.dispatch.dead</td><td class="n"><span class="badge bad">1<', dom)
    assert '<b id="total-accepted">5</b>' in dom and '<b id="total-failed">2</b>' in dom
    assert '<svg id="chart"' in dom and 'id="line-sent"' in dom

    shot = tmp_path / "status.png"
    await screenshot(base + "/status", shot, tmp_path / "profile")
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_status_json_is_the_snapshot() -> None:
    document = snapshot().as_json()
    assert json.loads(json.dumps(document))["provider"] == "ok"
