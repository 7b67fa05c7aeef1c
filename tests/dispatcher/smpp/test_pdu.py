"""Pins what `services/dispatcher/smpp/pdu.py` relies on of `smpp34`: an upgrade that
changes the wire format or the decoded shape fails here, loudly, byte for byte."""

from __future__ import annotations

import struct
from dataclasses import replace

import pytest
import smpp34

from services.dispatcher.smpp import pdu
from services.dispatcher.smpp.pdu import Command, Submit

SUBMIT = Submit(
    source_addr="MyBrand",
    source_ton=5,
    source_npi=0,
    destination_addr="447700900123",
    short_message=bytes([5, 0, 3, 1, 2, 1]) + b"hello",
    data_coding=0,
    esm_class=0x40,
    registered_delivery=1,
)


def test_submit_sm_wire_format() -> None:
    wire = pdu.encode_submit_sm(7, SUBMIT)
    assert wire.hex() == (
        "0000003f"
        "00000004"
        "00000000"
        "00000007"  # length, command, status, sequence
        "00"
        "0500"
        "4d794272616e6400"
        "0101"
        "34343737303039303031323300"  # service_type, source, destination
        "40"
        "00"
        "00"
        "00"
        "00"  # esm_class, protocol_id, priority, schedule and validity (empty)
        "01"
        "00"
        "00"
        "00"  # registered_delivery, replace_if_present, data_coding, sm_default_msg_id
        "0b"
        "050003010201"
        "68656c6c6f"  # sm_length, UDH, text
    )


def test_submit_sm_sar_tlvs_round_trip() -> None:
    sar = replace(SUBMIT, esm_class=0, sar=(0x1234, 3, 2))
    wire = pdu.encode_submit_sm(9, sar)
    assert wire.endswith(bytes.fromhex("020c00021234020e000103020f000102"))
    assert pdu.decode_submit_sm(wire) == sar


def test_deliver_sm_decodes_raw_bytes_and_vendor_tlvs() -> None:
    frame = smpp34.DeliverSm(
        "447700900123",
        "MyBrand",
        b"id:abc stat:DELIVRD",
        esm_class=4,
        data_coding=0,
        tlvs=[smpp34.Tlv(0x001E, b"abc\0"), smpp34.Tlv(0x1403, b"\xff\x00")],
        sequence_number=3,
    ).encode()
    deliver = pdu.decode_deliver_sm(bytes(frame))
    assert deliver == pdu.Deliver(
        "447700900123", "MyBrand", 4, 0, b"id:abc stat:DELIVRD", {0x1E: b"abc\0", 0x1403: b"\xff\x00"}
    )
    assert pdu.parse_header(bytes(frame)).command_id == Command.DELIVER_SM


def test_message_payload_stands_in_for_an_empty_short_message() -> None:
    frame = smpp34.DeliverSm("1", "2", b"", tlvs=[smpp34.Tlv(0x0424, b"long text")], sequence_number=1).encode()
    assert pdu.decode_deliver_sm(bytes(frame)).short_message == b"long text"


def test_responses_with_vendor_statuses_are_read() -> None:
    frame = struct.pack("!IIII", 20, 0x80000004, 0x458, 7) + b"abc\0"
    assert pdu.parse_header(frame) == pdu.Header(20, Command.SUBMIT_SM_RESP, 0x458, 7)
    assert pdu.c_string_body(frame) == "abc"
    assert pdu.decode_submit_sm(pdu.encode_submit_sm(1, SUBMIT)) == SUBMIT


def test_hand_written_pdus() -> None:
    assert pdu.encode_bind(Command.BIND_TRANSCEIVER, 1, "sys", "pw", "").hex() == (
        "0000001c000000090000000000000001737973007077000034000000"
    )
    assert pdu.encode_deliver_sm_resp(5, 0x64).hex() == "0000001180000005000000640000000500"
    assert pdu.encode_empty(Command.ENQUIRE_LINK, 2).hex() == "00000010000000150000000000000002"
    assert pdu.encode_submit_sm_resp(3, 0, "m1").hex() == "000000138000000400000000000000036d3100"
    with pytest.raises(ValueError):
        pdu.encode_bind(Command.BIND_TRANSMITTER, 1, "a-system-id-too-long", "pw", "")
