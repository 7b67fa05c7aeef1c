"""STOP → RECIPIENT_BLOCKED through the real pieces: the npm test SMSC sends an MO "STOP" to
a project's inbound number, a real dispatcher process routes it and puts the mobile on the
project's opt-out list, a real ingest server then refuses that project's send to it (and
only that project's), START takes it off again, and the ledger has both messages."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis

from shared import accounts as store
from shared.blocklist import Blocklist
from shared.optouts import OptOuts
from tests.dispatcher.harness import Dispatcher, eventually
from tests.ledger.support import ledger_settings, running_ledger, scalar
from tests.support.accounts import ProjectKeys, add_project
from tests.support.ingest_server import ServedIngest, served_ingest
from tests.support.smsc import TestSmsc

MOBILE = "+4741234567"
INBOUND_NUMBER = "+4790000001"


@pytest.fixture
def ingest(
    amqp_url: str, redis_url: str, accounts_file: Path, tmp_path: Path, free_port: Callable[[], int]
) -> Iterator[Callable[[], ServedIngest]]:
    env = {
        "RSMS_AMQP_URL": amqp_url,
        "RSMS_REDIS_URL": redis_url,
        "RSMS_ACCOUNTS_FILE": str(accounts_file),
        "RSMS_ACCOUNTS_RELOAD_SECONDS": "0.1",
        "RSMS_INGEST_WORKERS": "1",
    }
    with served_ingest(env, free_port(), tmp_path / "ingest.log", free_port()) as served:
        yield lambda: served


async def mo(smsc: TestSmsc, text: str, tag: str) -> None:
    """The SMSC delivers an MO to the bound dispatcher and records its deliver_sm_resp."""
    await smsc.command(
        tag=tag,
        deliver={
            "source_addr": MOBILE[1:],
            "source_addr_ton": 1,
            "source_addr_npi": 1,
            "destination_addr": INBOUND_NUMBER[1:],
            "esm_class": 0,
            "data_coding": 0,
            "short_message_hex": text.encode("ascii").hex(),
        },
    )
    (answer,) = await smsc.wait_for("deliver_sm_resp", 1, tag=tag)
    assert answer["status"] == 0  # answered only after the opt-out and the publish


async def send(api: httpx.AsyncClient, keys: ProjectKeys, recipient: str) -> httpx.Response:
    return await api.post(
        "/api/v1/sms/send",
        json={"tag": "billing", "recipients": [recipient], "message": "Your invoice is due"},
        headers={"Authorization": f"Bearer {keys.live_key}"},
    )


def blocked_answer(response: httpx.Response, number: str) -> dict[str, Any]:
    """The refusal with the number taken out, to compare one block's answer with another's."""
    assert response.status_code == 400, response.text
    return dict(
        response.json(),
        error=dict(
            response.json()["error"],
            details=[d.replace(number, "<number>") for d in response.json()["error"]["details"]],
        ),
    )


async def test_stop_blocks_the_projects_sends_to_the_mobile_and_start_lifts_it(
    amqp_url: str,
    redis_url: str,
    accounts_file: Path,
    clickhouse: Any,
    smsc: TestSmsc,
    start_smpp_dispatcher: Callable[..., Dispatcher],
    ingest: Callable[[], ServedIngest],
) -> None:
    acme = add_project(accounts_file, "acme")
    other = add_project(accounts_file, "other")
    with store.editing(accounts_file) as data:
        store.add_inbound_number(data, "acme", INBOUND_NUMBER)
    redis = Redis.from_url(redis_url, decode_responses=True)
    opt_outs = OptOuts(redis)
    settings = ledger_settings(amqp_url, clickhouse.dsn, clickhouse.database)
    db, client = clickhouse.database, clickhouse.client()
    try:
        async with running_ledger(settings), httpx.AsyncClient(base_url=ingest().url, timeout=10) as api:
            dispatcher = await start_smpp_dispatcher(RSMS_ACCOUNTS_FILE=str(accounts_file)).ready()
            # Bound at start: an MO can come before the gateway ever sent anything.
            assert len(await smsc.wait_for("bind_transceiver", 1)) == 1
            assert (await send(api, acme, MOBILE)).status_code == 200  # before any STOP

            await mo(smsc, "Stop", "stop")
            assert await opt_outs.members("acme") == [MOBILE]
            refused = await send(api, acme, MOBILE)
            assert refused.json()["error"]["code"] == "RECIPIENT_BLOCKED"
            assert (await send(api, other, MOBILE)).status_code == 200  # another project's send goes

            # The answer does not tell an opt-out from a global block (issue 8 item 12).
            await Blocklist(redis).add(["+4741234500"])
            globally = await send(api, acme, "+4741234500")
            assert blocked_answer(refused, MOBILE) == blocked_answer(globally, "+4741234500")

            await mo(smsc, "START", "start")
            assert await opt_outs.members("acme") == []
            assert (await send(api, acme, MOBILE)).status_code == 200
            metrics = await dispatcher.metrics()
            for action in ("opt_out", "opt_in"):
                assert f'rsms_dispatcher_inbound_total{{action="{action}",routing="routed"}} 1.0' in metrics

            await eventually(
                lambda: _count(client, f"SELECT count() FROM {db}.sms_inbound FINAL"),
                lambda n: n == 2,
                what="both inbound messages in ClickHouse",
            )
        rows = client.query(
            f"SELECT project, sender, destination, text, body_stored, action FROM {db}.sms_inbound FINAL "
            "ORDER BY received_at"
        ).result_rows
        assert rows == [
            ("acme", MOBILE, INBOUND_NUMBER, "Stop", True, "opt_out"),
            ("acme", MOBILE, INBOUND_NUMBER, "START", True, "opt_in"),
        ]
        assert scalar(client, f"SELECT count() FROM {db}.sms_inbound WHERE project = ''") == 0
    finally:
        await redis.aclose()


async def _count(client: Any, sql: str) -> int:
    return int(scalar(client, sql))
