"""Delivery receipts end to end through the real broker: sent through the ingest API, the
dispatcher sends to the simulator, the simulator calls back with receipts, the API and
ClickHouse show each recipient delivered (or undelivered), and billing is unchanged."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from litestar.testing import AsyncTestClient

from services.ingest.app import create_app
from tests.dispatcher.harness import Dispatcher, Simulator, eventually
from tests.ledger.support import http_status, ledger_process, ledger_settings, query_chdb_dir
from tests.support.accounts import ProjectKeys, add_project


@pytest.fixture
async def receipts_simulator(free_port: Callable[[], int], tmp_path: Path) -> AsyncIterator[Simulator]:
    sim = Simulator(free_port(), tmp_path / "simulator.log", RSMS_PROVIDER_SIM_RECEIPT_DELAY_MS="200")
    try:
        yield await sim.started()
    finally:
        await sim.stop()


async def test_receipts_reach_the_api_and_clickhouse_and_billing_is_unchanged(
    amqp_url: str,
    redis_url: str,
    ingest_settings: Any,
    accounts_file: Path,
    receipts_simulator: Simulator,
    free_port: Callable[[], int],
    tmp_path: Path,
) -> None:
    acme: ProjectKeys = add_project(accounts_file, "acme")
    headers = {"Authorization": f"Bearer {acme.live_key}"}
    chdb = tmp_path / "chdb"
    settings = ledger_settings(amqp_url, f"chdb://{chdb}", "rsms")
    dispatcher = Dispatcher(
        {
            "RSMS_AMQP_URL": amqp_url,
            "RSMS_REDIS_URL": redis_url,
            "RSMS_PROVIDER_URL": receipts_simulator.url,
            "RSMS_RECEIPTS_CALLBACK_TOKEN": "a-token-of-this-test",
            "RSMS_LOG_LEVEL": "INFO",
        },
        free_port(),
        tmp_path / "dispatcher.log",
    )
    try:
        with ledger_process(settings, tmp_path / "ledger.log") as ledger:
            ledger.start()
            await dispatcher.ready()

            async def ledger_ready() -> bool:
                return await http_status(settings.ledger_http_port, "/health/ready") == 200

            await eventually(ledger_ready, bool, within=90, what="the ledger to be ready")
            async with AsyncTestClient(app=create_app(ingest_settings)) as api:

                async def send(recipients: list[str]) -> str:
                    response = await api.post(
                        "/api/v1/sms/send",
                        json={"tag": "billing", "recipients": recipients, "message": "Invoice due"},
                        headers=headers,
                    )
                    assert response.status_code == 200, response.text
                    return str(response.json()["data"]["messageId"])

                async def recipients_of(message_id: str) -> dict[str, dict[str, Any]]:
                    response = await api.get(f"/api/v1/sms/{message_id}", headers=headers)
                    if response.status_code != 200:
                        return {}
                    return {row["recipient"]: row for row in response.json()["data"]["recipients"]}

                delivered_id = await send(["+4712345678", "+4687654321"])
                rows = await eventually(
                    lambda: recipients_of(delivered_id),
                    lambda rows: len(rows) == 2 and all(r["deliveryStatus"] == "delivered" for r in rows.values()),
                    within=60,
                    what="both recipients delivered",
                )
                for row in rows.values():
                    assert row["status"] == "sent" and row["deliveryError"] is None
                    assert row["deliveryUpdatedAt"] is not None

                await receipts_simulator.faults(receipt_failure_rate=1.0)
                undelivered_id = await send(["+4711111111"])
                [failed] = (
                    await eventually(
                        lambda: recipients_of(undelivered_id),
                        lambda rows: any(r["deliveryStatus"] for r in rows.values()),
                        within=60,
                        what="the undelivered receipt",
                    )
                ).values()
                assert (failed["status"], failed["deliveryStatus"], failed["deliveryError"]) == (
                    "sent",
                    "undelivered",
                    "001",
                )
                # Billed on submit: the undelivered recipient is billed like the delivered ones.
                today = datetime.now(UTC).date().isoformat()
                usage = (await api.get(f"/api/v1/usage?from={today}&to={today}", headers=headers)).json()["data"]
                assert (usage["totals"]["recipients"], usage["totals"]["cost"]) == (3, "2.01 NOK")
                status = (await api.get(f"/api/v1/sms/{undelivered_id}", headers=headers)).json()["data"]
                assert status["cost"] == "0.67 NOK" and status["summary"]["deliveryFailed"] == 1

            stats = await receipts_simulator.stats()
            assert (stats.get("receipts_delivered"), stats.get("receipts_undelivered")) == (2, 1)
            assert stats.get("receipt_callbacks_failed", 0) == 0
            assert ledger.terminate() == 0
    finally:
        await dispatcher.terminate()
        dispatcher.close()
    rows_in_clickhouse = query_chdb_dir(
        chdb, "SELECT message_id, recipient, status, error_code FROM rsms.sms_receipts FINAL ORDER BY recipient"
    )
    assert sorted((str(m), r, s, e) for m, r, s, e in rows_in_clickhouse) == sorted(
        [
            (delivered_id, "+4687654321", "delivered", None),
            (delivered_id, "+4712345678", "delivered", None),
            (undelivered_id, "+4711111111", "undelivered", "001"),
        ]
    )


async def test_the_receipt_callback_refuses_a_wrong_token(start_dispatcher: Callable[..., Dispatcher]) -> None:
    dispatcher = await start_dispatcher().ready()
    url = f"http://127.0.0.1:{dispatcher.http_port}/v1/receipts"
    async with httpx.AsyncClient(timeout=5) as client:
        body = {"receipts": [{"id": "sim-1", "status": "delivered"}]}
        wrong = await client.post(url, json=body, headers={"Authorization": "Bearer guessed"})
        unreadable = await client.post(url, content=b"{", headers={"Authorization": "Bearer sim-receipt-token"})
    assert (wrong.status_code, unreadable.status_code) == (401, 400)
