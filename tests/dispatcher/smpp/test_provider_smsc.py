"""The SMPP provider against the test SMSC (npm `smpp`, another codec than ours)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from services.dispatcher.provider import DeliveryStatus, OutboundBatch, ProviderAccountError
from services.dispatcher.smpp.provider import SmppProvider
from shared.provider_state import ProviderState
from shared.segments import count_segments
from tests.dispatcher.smpp.conftest import RecordingSink
from tests.support.smsc import TestSmsc

MakeProvider = Callable[..., SmppProvider]

LONG_GSM7 = "Hello [world] {braces} and the euro €, " * 9  # escapes on part borders
LONG_UCS2 = "Привет, мир 😀 " * 20  # surrogate pairs


def batch(text: str, *recipients: str, sender: str = "RSMS") -> OutboundBatch:
    return OutboundBatch(sender, text, list(recipients), [f"ref-{r}" for r in recipients])


async def test_gsm7_multipart_arrives_part_by_part_with_8_bit_udh(smsc: TestSmsc, make_provider: MakeProvider) -> None:
    provider = make_provider()
    ((delivery,),) = await provider.send([batch(LONG_GSM7, "+447700900123", sender="RSMS")])
    parts = smsc.records("submit_sm")
    billed = count_segments(LONG_GSM7).segments
    assert delivery.status is DeliveryStatus.SENT
    assert len(parts) == billed == len(delivery.carrier_ids) > 2
    assert [a["message_id"] for a in await smsc.wait_for("submit_sm_answer", billed)] == list(delivery.carrier_ids)
    refs = {p["udh"][0][2] for p in parts}
    assert len(refs) == 1
    assert [p["udh"] for p in parts] == [[[0, 3, *refs, billed, i]] for i in range(1, billed + 1)]
    assert "".join(p["message"] for p in parts) == LONG_GSM7
    first = parts[0]
    assert (first["source_addr"], first["source_addr_ton"], first["source_addr_npi"]) == ("RSMS", 5, 0)
    assert (first["destination_addr"], first["dest_addr_ton"], first["dest_addr_npi"]) == ("447700900123", 1, 1)
    assert {p["data_coding"] for p in parts} == {0} and {p["esm_class"] for p in parts} == {0x40}
    assert {p["registered_delivery"] for p in parts} == {1}


async def test_ucs2_multipart_with_16_bit_udh(smsc: TestSmsc, make_provider: MakeProvider) -> None:
    provider = make_provider(smpp_concatenation="udh16")
    ((delivery,),) = await provider.send([batch(LONG_UCS2, "+447700900123", sender="+447700900001")])
    parts = smsc.records("submit_sm")
    billed = count_segments(LONG_UCS2).segments
    assert delivery.status is DeliveryStatus.SENT and len(parts) == billed == len(delivery.carrier_ids)
    assert {p["data_coding"] for p in parts} == {8}
    assert [p["udh"][0][:2] + p["udh"][0][4:] for p in parts] == [[8, 4, billed, i] for i in range(1, billed + 1)]
    assert "".join(p["message"] for p in parts) == LONG_UCS2
    assert (parts[0]["source_addr"], parts[0]["source_addr_ton"], parts[0]["source_addr_npi"]) == (
        "447700900001",
        1,
        1,
    )


async def test_sar_multipart_carries_the_tlvs_and_no_udh(smsc: TestSmsc, make_provider: MakeProvider) -> None:
    provider = make_provider(smpp_concatenation="sar")
    ((delivery,),) = await provider.send([batch(LONG_GSM7, "+447700900123")])
    parts = smsc.records("submit_sm")
    billed = count_segments(LONG_GSM7).segments
    assert delivery.status is DeliveryStatus.SENT and len(parts) == billed
    assert [p["udh"] for p in parts] == [[]] * billed and {p["esm_class"] for p in parts} == {0}
    assert [(p["sar_total_segments"], p["sar_segment_seqnum"]) for p in parts] == [
        (billed, i) for i in range(1, billed + 1)
    ]
    assert len({p["sar_msg_ref_num"] for p in parts}) == 1
    assert "".join(p["message"] for p in parts) == LONG_GSM7


async def test_throttled_submits_back_off_and_nothing_is_lost(smsc: TestSmsc, make_provider: MakeProvider) -> None:
    await smsc.command(throttle=5)
    provider = make_provider(smpp_window=4)
    recipients = [f"+4477009001{i:02d}" for i in range(20)]
    (deliveries,) = await provider.send([batch("hello", *recipients)])
    assert [d.status for d in deliveries] == [DeliveryStatus.SENT] * 20
    answers = await smsc.wait_for("submit_sm_answer", 25)
    assert sum(a["status"] == 0x58 for a in answers) == 5
    accepted = [a for a in answers if a["status"] == 0]
    assert len(accepted) == 20  # each recipient taken exactly once
    destinations = [p["destination_addr"] for p in smsc.records("submit_sm")]
    assert sorted(set(destinations)) == sorted(r[1:] for r in recipients)


async def test_invalid_destination_fails_that_recipient_only(smsc: TestSmsc, make_provider: MakeProvider) -> None:
    await smsc.command(reject={"447700900999": 0x0B})
    provider = make_provider()
    ((good, bad),) = await provider.send([batch("hi", "+447700900123", "+447700900999")])
    assert good.status is DeliveryStatus.SENT
    assert bad.status is DeliveryStatus.INVALID and bad.detail is not None and "ESME_RINVDSTADR" in bad.detail


async def test_vendor_status_mapped_to_no_credits_raises_an_account_error(
    smsc: TestSmsc, make_provider: MakeProvider
) -> None:
    await smsc.command(reject={"447700900123": 0x458})
    provider = make_provider(smpp_status_map={"0x00000458": "no_credits"})
    with pytest.raises(ProviderAccountError) as raised:
        await provider.send([batch("hi", "+447700900123")])
    assert raised.value.state is ProviderState.NO_CREDITS


async def test_bind_refused_for_credentials_is_an_auth_error(smsc: TestSmsc, make_provider: MakeProvider) -> None:
    provider = make_provider(smpp_password="wrong")
    with pytest.raises(ProviderAccountError) as raised:
        await provider.send([batch("hi", "+447700900123")])
    assert raised.value.state is ProviderState.AUTH_ERROR
    assert await provider.account_state() is ProviderState.AUTH_ERROR
    assert smsc.records("submit_sm") == []


async def test_connection_dropped_mid_window_leaves_the_unanswered_unknown_and_sends_nothing_twice(
    smsc: TestSmsc, make_provider: MakeProvider
) -> None:
    provider = make_provider(smpp_window=10)
    ((warm,),) = await provider.send([batch("warm-up", "+447700900100")])
    assert warm.status is DeliveryStatus.SENT
    await smsc.command(hold=True, drop_after=6)
    recipients = [f"+4477009002{i:02d}" for i in range(6)]
    (deliveries,) = await provider.send([batch("hello", *recipients)])
    assert [d.status for d in deliveries] == [DeliveryStatus.UNKNOWN] * 6
    assert all(d.detail and "unknown" in d.detail for d in deliveries)
    # The bind comes back, and a new send goes through; the unknown ones were not resent.
    ((after,),) = await provider.send([batch("after", "+447700900300")])
    assert after.status is DeliveryStatus.SENT
    destinations = [p["destination_addr"] for p in smsc.records("submit_sm")]
    assert sorted(destinations) == sorted(["447700900100", "447700900300", *(r[1:] for r in recipients)])


async def test_receipts_reach_the_sink_before_deliver_sm_resp(smsc: TestSmsc, make_provider: MakeProvider) -> None:
    sink = RecordingSink()
    await smsc.command(receipts={"stat": "DELIVRD", "err": "000"})
    provider = make_provider(sink)
    ((delivery,),) = await provider.send([batch(LONG_GSM7, "+447700900123")])
    responses = await smsc.wait_for("deliver_sm_resp", len(delivery.carrier_ids))
    assert [r["status"] for r in responses] == [0] * len(delivery.carrier_ids)
    assert sorted(r.carrier_id for r in sink.got_receipts) == sorted(delivery.carrier_ids)
    assert {r.status for r in sink.got_receipts} == {"delivered"}
    assert all(r.done_at is not None and r.error_code is None for r in sink.got_receipts)


async def test_a_failing_sink_answers_a_temporary_error_so_the_smsc_retries(
    smsc: TestSmsc, make_provider: MakeProvider
) -> None:
    sink = RecordingSink()
    sink.fail = True
    await smsc.command(receipts={"stat": "UNDELIV", "err": "034"})
    provider = make_provider(sink)
    await provider.send([batch("hi", "+447700900123")])
    (response,) = await smsc.wait_for("deliver_sm_resp", 1)
    assert response["status"] == 0x64  # ESME_RX_T_APPN
    assert sink.got_receipts == []


async def test_inbound_parts_are_reassembled_and_answered_after_the_sink(
    smsc: TestSmsc, make_provider: MakeProvider
) -> None:
    sink = RecordingSink()
    provider = make_provider(sink)
    provider.start()
    await provider.account_state()
    for _ in range(100):  # wait for the bind
        if await _bound(smsc):
            break
        await asyncio.sleep(0.05)
    text = "STOP sending me these, thanks — Ünïcödé 😀"
    encoded = text.encode("utf-16-be")
    half = len(encoded) // 2 // 2 * 2
    for seq, chunk in enumerate((encoded[:half], encoded[half:]), 1):
        await smsc.command(
            tag=f"part-{seq}",
            deliver={
                "source_addr": "447700900555",
                "source_addr_ton": 1,
                "source_addr_npi": 1,
                "destination_addr": "447700900001",
                "esm_class": 0x40,
                "data_coding": 8,
                "short_message_hex": (bytes([5, 0, 3, 42, 2, seq]) + chunk).hex(),
            },
        )
    responses = await smsc.wait_for("deliver_sm_resp", 2)
    assert [r["status"] for r in responses] == [0, 0]
    (message,) = sink.got_inbound
    assert (message.sender, message.destination, message.text) == ("+447700900555", "+447700900001", text)

    await smsc.command(
        tag="gsm",
        deliver={
            "source_addr": "447700900556",
            "destination_addr": "447700900001",
            "esm_class": 0,
            "data_coding": 0,
            "short_message_hex": b"Start \x1b\x65".hex(),
        },
    )
    await smsc.wait_for("deliver_sm_resp", 1, tag="gsm")
    assert sink.got_inbound[-1].text == "Start €"


async def test_close_unbinds(smsc: TestSmsc, make_provider: MakeProvider) -> None:
    provider = make_provider()
    await provider.send([batch("hi", "+447700900123")])
    await provider.close()
    assert len(await smsc.wait_for("unbind", 1)) == 1


async def _bound(smsc: TestSmsc) -> bool:
    return bool(smsc.records("bind_transceiver"))


async def test_a_batch_shares_one_encoding_and_each_recipient_gets_its_own_destination(
    smsc: TestSmsc, make_provider: MakeProvider
) -> None:
    # Recipients of one batch get one template (`pdu.SubmitTemplate`): the same parts, the
    # same concatenation reference, each its own destination and sequence number.
    provider = make_provider()
    recipients = [f"+4790000{i:03d}" for i in range(25)]
    (deliveries,) = await provider.send([batch(LONG_GSM7, *recipients)])
    billed = count_segments(LONG_GSM7).segments
    assert all(d.status is DeliveryStatus.SENT and len(d.carrier_ids) == billed for d in deliveries)
    parts = smsc.records("submit_sm")
    assert len(parts) == billed * len(recipients)
    assert sorted({p["destination_addr"] for p in parts}) == [r[1:] for r in recipients]
    for recipient in recipients:
        mine = [p for p in parts if p["destination_addr"] == recipient[1:]]
        assert "".join(p["message"] for p in mine) == LONG_GSM7
        assert [p["udh"][0][4] for p in mine] == list(range(1, billed + 1))
    assert len({tuple(p["udh"][0][:4]) for p in parts}) == 1


@pytest.mark.parametrize(("registered_delivery", "expected"), [(0, False), (1, True), (2, True), (0x10, True)])
async def test_parts_are_named_for_receipts_only_where_a_receipt_was_asked_for(
    smsc: TestSmsc, make_provider: MakeProvider, registered_delivery: int, expected: bool
) -> None:
    # Without a receipt nothing will name a part's carrier id: nothing for the receipt
    # store to keep (`receipts.sent_parts` records only the ids a delivery carries).
    provider = make_provider(smpp_registered_delivery=registered_delivery)
    ((delivery,),) = await provider.send([batch("Hello", "+447700900123")])
    assert delivery.status is DeliveryStatus.SENT and delivery.provider_reference
    assert {p["registered_delivery"] for p in smsc.records("submit_sm")} == {registered_delivery}
    assert delivery.carrier_ids == ((delivery.provider_reference,) if expected else ())


async def test_an_account_refusal_mid_batch_keeps_what_was_sent_and_the_next_send_raises(
    smsc: TestSmsc, make_provider: MakeProvider
) -> None:
    await smsc.command(reject={"447700900002": 0x458})
    provider = make_provider(smpp_status_map={"0x00000458": "no_credits"})
    recipients = ["+447700900001", "+447700900002", "+447700900003"]
    (deliveries,) = await provider.send([batch("hi", *recipients)])
    assert [d.status for d in deliveries] == [DeliveryStatus.SENT, DeliveryStatus.TRANSIENT, DeliveryStatus.SENT]
    with pytest.raises(ProviderAccountError) as raised:
        await provider.send([batch("hi", "+447700900004")])
    assert raised.value.state is ProviderState.NO_CREDITS
    assert sorted(p["destination_addr"] for p in smsc.records("submit_sm")) == [r[1:] for r in recipients]


async def test_a_paced_bind_sends_a_batch_at_its_rate_and_each_once(
    smsc: TestSmsc, make_provider: MakeProvider
) -> None:
    provider = make_provider(smpp_submit_rate=200.0, smpp_window=3)
    recipients = [f"+4477009004{i:02d}" for i in range(12)]
    (deliveries,) = await provider.send([batch("paced", *recipients)])
    assert [d.status for d in deliveries] == [DeliveryStatus.SENT] * 12
    assert sorted(p["destination_addr"] for p in smsc.records("submit_sm")) == sorted(r[1:] for r in recipients)


async def test_two_binds_share_the_submits_of_one_call_and_of_single_recipient_batches(
    smsc: TestSmsc, make_provider: MakeProvider
) -> None:
    provider = make_provider(smpp_binds=2, smpp_window=5)
    ((warm,),) = await provider.send([batch("warm-up", "+447700900500")])  # binds open at the first send
    for _ in range(100):  # the second bind may still be on its way
        if sum(s is not None for s in provider._sessions) == 2:
            break
        await asyncio.sleep(0.02)
    bulk = [f"+4477009005{i:02d}" for i in range(1, 21)]
    singles = [batch("single", f"+4477009006{i:02d}") for i in range(10)]
    deliveries = await provider.send([batch("bulk", *bulk), *singles])
    assert warm.status is DeliveryStatus.SENT
    assert [d.status for ds in deliveries for d in ds] == [DeliveryStatus.SENT] * 30
    submits = smsc.records("submit_sm")
    destinations = [p["destination_addr"] for p in submits]
    assert len(destinations) == len(set(destinations)) == 31  # each once
    assert len({p["session"] for p in submits[1:]}) == 2  # both binds took a share
