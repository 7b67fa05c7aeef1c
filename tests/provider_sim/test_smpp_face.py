"""The simulator's SMPP face, driven by a plain ESME (`smpp34.Client`) and its admin API."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import smpp34
from click.testing import CliRunner
from litestar.testing import AsyncTestClient

from cli.main import rsms
from services.provider_sim.app import create_app
from services.provider_sim.settings import ProviderSimSettings
from services.provider_sim.smpp_face import encode_inbound
from tests.dispatcher.harness import Simulator

ADMIN = {"Authorization": "Bearer sim-token"}
ESME_RINVDSTADR = 0x0B
ESME_RINVSYSID = 0x0F


class Face:
    def __init__(self, client: AsyncTestClient[Any], port: int) -> None:
        self.admin = client
        self.port = port

    async def bind(self, system_id: str = "rsms") -> smpp34.Smsc:
        client = smpp34.Client("127.0.0.1", self.port, system_id, "rsms", bind_type="TRX")
        return await client.connect()

    async def faults(self, **changes: Any) -> None:
        (await self.admin.post("/admin/faults", headers=ADMIN, json=changes)).raise_for_status()


@pytest.fixture
async def face(free_port: Callable[[], int]) -> AsyncIterator[Face]:
    port = free_port()
    settings = ProviderSimSettings(
        provider_sim_port=free_port(), provider_sim_smpp_port=port, provider_sim_receipt_delay_ms=50
    )
    async with AsyncTestClient(app=create_app(settings)) as client:
        yield Face(client, port)


async def next_deliver(smsc: smpp34.Smsc) -> smpp34.DeliverSmEvent:
    event = await asyncio.wait_for(smsc.next(), 10)
    assert isinstance(event, smpp34.DeliverSmEvent), event
    return event


async def test_a_submit_is_accepted_listed_and_receipted(face: Face) -> None:
    smsc = await face.bind()
    answer = await smsc.submit_sm("4790000001", b"hello", source_addr="RSMS", source_addr_ton=5, registered_delivery=1)
    assert answer.is_success and answer.message_id
    receipt = await next_deliver(smsc)
    assert receipt.esm_class == 0x04
    assert (receipt.source_addr, receipt.destination_addr) == ("4790000001", "RSMS")
    text = receipt.short_message.decode()
    assert text.startswith(f"id:{answer.message_id} ") and "stat:DELIVRD err:000" in text
    assert {t.tag: t.value for t in receipt.tlvs}[0x001E] == answer.message_id.encode() + b"\0"

    listed = (await face.admin.get("/admin/smpp/messages", headers=ADMIN)).json()
    assert [(m["id"], m["destination"], m["source"]) for m in listed] == [(answer.message_id, "4790000001", "RSMS")]
    stats = (await face.admin.get("/admin/stats", headers=ADMIN)).json()
    assert stats["smpp_accepted"] == 1
    await smsc.unbind()


async def test_receipt_failures_invalid_numbers_and_no_receipt_unless_asked(face: Face) -> None:
    await face.faults(receipt_failure_rate=1.0, invalid=["4790000009"])
    smsc = await face.bind()
    refused = await smsc.submit_sm("4790000009", b"hi", source_addr="RSMS", registered_delivery=1)
    assert refused.command_status == ESME_RINVDSTADR
    quiet = await smsc.submit_sm("4790000002", b"no receipt wanted", source_addr="RSMS", registered_delivery=0)
    asked = await smsc.submit_sm("4790000003", b"hi", source_addr="RSMS", registered_delivery=1)
    assert quiet.is_success and asked.is_success
    receipt = await next_deliver(smsc)
    assert f"id:{asked.message_id} " in receipt.short_message.decode()
    assert "stat:UNDELIV err:001" in receipt.short_message.decode()
    assert {t.tag: t.value for t in receipt.tlvs}[0x0427] == bytes([5])  # message_state UNDELIVERABLE
    await smsc.unbind()


async def test_another_system_id_has_every_submit_refused(face: Face) -> None:
    smsc = await face.bind(system_id="stranger")
    answer = await smsc.submit_sm("4790000001", b"hi", source_addr="RSMS")
    assert answer.command_status == ESME_RINVSYSID
    assert (await face.admin.get("/admin/smpp/messages", headers=ADMIN)).json() == []
    await smsc.unbind()


@pytest.mark.parametrize("text", ["STOP", "Hei på deg – ÆØÅ 😀", "A long one: " + "x" * 200])
async def test_an_injected_inbound_message_reaches_a_receiving_bind(face: Face, text: str) -> None:
    smsc = await face.bind()
    answer = await face.admin.post(
        "/admin/smpp/inbound", headers=ADMIN, json={"from": "+4790000001", "to": "+4720000000", "text": text}
    )
    assert answer.status_code == 200 and answer.json() == {"deliver_sm_resp_status": 0}
    inbound = await next_deliver(smsc)
    assert inbound.esm_class == 0 and (inbound.source_addr, inbound.destination_addr) == ("4790000001", "4720000000")
    payload = inbound.short_message or {t.tag: t.value for t in inbound.tlvs}[0x0424]
    assert payload.decode("ascii" if inbound.data_coding == 0 else "utf-16-be") == text
    await smsc.unbind()


async def test_inbound_without_a_bind_is_refused(face: Face) -> None:
    answer = await face.admin.post("/admin/smpp/inbound", headers=ADMIN, json={"from": "1", "to": "2", "text": "x"})
    assert answer.status_code == 409


def test_gsm7_only_where_its_octets_are_asciis() -> None:
    assert encode_inbound("STOP")[:2] == (0, b"STOP")
    assert encode_inbound("price: $5")[0] == 8  # "$" is not at 0x24 in GSM 03.38
    data_coding, short_message, (payload,) = encode_inbound("x" * 161)
    assert (data_coding, short_message, payload.tag, payload.value) == (0, b"", 0x0424, b"x" * 161)


async def test_rsms_provider_sim_inbound_sends_an_mo_message(free_port: Callable[[], int], tmp_path: Path) -> None:
    port, smpp_port = free_port(), free_port()
    simulator = await Simulator(port, tmp_path / "sim.log", RSMS_PROVIDER_SIM_SMPP_PORT=str(smpp_port)).started()
    try:
        client = smpp34.Client("127.0.0.1", smpp_port, "rsms", "rsms", bind_type="TRX")
        smsc = await client.connect()
        env = {"RSMS_PROVIDER_SIM_PORT": str(port)}
        args = ["provider-sim", "inbound", "--from", "+4790000001", "--to", "RSMS", "START"]
        result = await asyncio.to_thread(CliRunner(env=env).invoke, rsms, args)
        assert result.exit_code == 0 and "Taken by the gateway." in result.output, result.output
        inbound = await next_deliver(smsc)
        assert (inbound.source_addr, inbound.destination_addr, inbound.short_message) == (
            "4790000001",
            "RSMS",
            b"START",
        )
        await smsc.unbind()
    finally:
        await simulator.stop()
