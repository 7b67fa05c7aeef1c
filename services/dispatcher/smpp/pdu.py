"""SMPP 3.4 PDUs on the wire: the one module that knows the `smpp34` library.

`smpp34` (Rust-backed, maintained) encodes and decodes the PDUs that carry content,
`submit_sm` and `deliver_sm` with their TLVs, vendor tags included, and decodes every
other PDU into its header and raw body. It has no Python classes for the binds,
`enquire_link`, `unbind` and the `*_resp` PDUs: those are a 16-byte header and at most a
few C-strings, written here with `struct` as SMPP 3.4 section 4 lays them out. Whatever
this module relies on of `smpp34` is pinned by `tests/dispatcher/smpp/test_pdu.py`.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import IntEnum

import smpp34


class Command(IntEnum):
    GENERIC_NACK = 0x80000000
    BIND_RECEIVER = 0x00000001
    BIND_RECEIVER_RESP = 0x80000001
    BIND_TRANSMITTER = 0x00000002
    BIND_TRANSMITTER_RESP = 0x80000002
    SUBMIT_SM = 0x00000004
    SUBMIT_SM_RESP = 0x80000004
    DELIVER_SM = 0x00000005
    DELIVER_SM_RESP = 0x80000005
    UNBIND = 0x00000006
    UNBIND_RESP = 0x80000006
    BIND_TRANSCEIVER = 0x00000009
    BIND_TRANSCEIVER_RESP = 0x80000009
    ENQUIRE_LINK = 0x00000015
    ENQUIRE_LINK_RESP = 0x80000015


RESPONSE_BIT = 0x80000000
HEADER = struct.Struct("!IIII")
INTERFACE_VERSION = 0x34

TLV_SAR_MSG_REF_NUM = 0x020C
TLV_SAR_TOTAL_SEGMENTS = 0x020E
TLV_SAR_SEGMENT_SEQNUM = 0x020F
TLV_RECEIPTED_MESSAGE_ID = 0x001E
TLV_MESSAGE_STATE = 0x0427
TLV_NETWORK_ERROR_CODE = 0x0423


@dataclass(frozen=True, slots=True)
class Header:
    length: int
    command_id: int
    status: int
    sequence: int


@dataclass(frozen=True, slots=True)
class Submit:
    """What the provider puts in one submit_sm."""

    source_addr: str
    source_ton: int
    source_npi: int
    destination_addr: str
    short_message: bytes
    data_coding: int
    esm_class: int
    registered_delivery: int
    service_type: str = ""
    sar: tuple[int, int, int] | None = None


@dataclass(frozen=True, slots=True)
class Deliver:
    """A deliver_sm as the SMSC sent it: a receipt or an inbound part."""

    source_addr: str
    destination_addr: str
    esm_class: int
    data_coding: int
    short_message: bytes
    tlvs: dict[int, bytes]
    """Tag to raw value; message_payload (0x0424) stands in for an empty short_message."""


def parse_header(data: bytes) -> Header:
    return Header(*HEADER.unpack_from(data))


def encode_submit_sm(sequence: int, submit: Submit) -> bytes:
    tlvs = []
    if submit.sar is not None:
        ref, total, seq = submit.sar
        tlvs = [
            smpp34.Tlv(TLV_SAR_MSG_REF_NUM, ref.to_bytes(2, "big")),
            smpp34.Tlv(TLV_SAR_TOTAL_SEGMENTS, bytes([total])),
            smpp34.Tlv(TLV_SAR_SEGMENT_SEQNUM, bytes([seq])),
        ]
    pdu = smpp34.SubmitSm(
        submit.source_addr,
        submit.destination_addr,
        submit.short_message,
        service_type=submit.service_type,
        source_addr_ton=submit.source_ton,
        source_addr_npi=submit.source_npi,
        dest_addr_ton=1,
        dest_addr_npi=1,
        esm_class=submit.esm_class,
        registered_delivery=submit.registered_delivery,
        data_coding=submit.data_coding,
        tlvs=tlvs,
        sequence_number=sequence,
    )
    return bytes(pdu.encode())


class SubmitTemplate:
    """One part's submit_sm with everything but the destination and sequence encoded once.

    A job sends the same source, text and options to many destinations; encoding each
    submit_sm anew (a `smpp34.SubmitSm` per recipient) was most of the dispatcher's CPU per
    recipient. The template is cut from `smpp34`'s own encoding of the part with an empty
    destination, at the destination's place, so the frames it makes are exactly
    `encode_submit_sm`'s (pinned by `tests/dispatcher/smpp/test_pdu.py`).
    """

    __slots__ = ("_head", "_length", "_tail")

    def __init__(self, submit: Submit) -> None:
        body = encode_submit_sm(0, submit if submit.destination_addr == "" else _without_destination(submit))
        # service_type, source TON and NPI, source_addr, dest TON and NPI, then destination_addr.
        at = HEADER.size + len(submit.service_type.encode("ascii")) + 1 + 2 + len(submit.source_addr.encode()) + 1 + 2
        if body[at] != 0:
            raise ValueError("submit_sm layout is not the one SMPP 3.4 lays out")  # smpp34 changed
        self._head = body[HEADER.size : at]
        self._tail = body[at:]
        self._length = len(body)

    def frame(self, sequence: int, destination: str) -> bytes:
        address = destination.encode("ascii")
        if len(address) > _MAX_ADDRESS:
            raise ValueError("destination_addr longer than SMPP 3.4 allows")
        return (
            HEADER.pack(self._length + len(address), Command.SUBMIT_SM, 0, sequence) + self._head + address + self._tail
        )


_MAX_ADDRESS = 20  # destination_addr: a C-Octet String of 21 octets at most


def _without_destination(submit: Submit) -> Submit:
    return Submit(
        submit.source_addr,
        submit.source_ton,
        submit.source_npi,
        "",
        submit.short_message,
        submit.data_coding,
        submit.esm_class,
        submit.registered_delivery,
        submit.service_type,
        submit.sar,
    )


def decode_deliver_sm(frame: bytes) -> Deliver:
    pdu = smpp34.decode(frame)
    if not isinstance(pdu, smpp34.DeliverSm):
        raise ValueError(f"not a deliver_sm: {type(pdu).__name__}")
    tlvs = {t.tag: bytes(t.value) for t in pdu.tlvs}
    short_message = bytes(pdu.short_message) or tlvs.get(0x0424, b"")
    return Deliver(pdu.source_addr, pdu.destination_addr, pdu.esm_class, pdu.data_coding, short_message, tlvs)


def decode_submit_sm(frame: bytes) -> Submit:
    """For the simulator's SMPP face and tests: the submit_sm an ESME sent."""
    pdu = smpp34.decode(frame)
    if not isinstance(pdu, smpp34.SubmitSm):
        raise ValueError(f"not a submit_sm: {type(pdu).__name__}")
    tlvs = {t.tag: bytes(t.value) for t in pdu.tlvs}
    sar = None
    if TLV_SAR_MSG_REF_NUM in tlvs:
        sar = (
            int.from_bytes(tlvs[TLV_SAR_MSG_REF_NUM], "big"),
            tlvs[TLV_SAR_TOTAL_SEGMENTS][0],
            tlvs[TLV_SAR_SEGMENT_SEQNUM][0],
        )
    return Submit(
        pdu.source_addr,
        pdu.source_addr_ton,
        pdu.source_addr_npi,
        pdu.destination_addr,
        bytes(pdu.short_message),
        pdu.data_coding,
        pdu.esm_class,
        pdu.registered_delivery,
        pdu.service_type,
        sar,
    )


def c_string_body(frame: bytes) -> str:
    """The first C-octet string of a PDU body: submit_sm_resp's message_id, a bind_resp's system_id."""
    body = frame[HEADER.size :]
    end = body.find(b"\0")
    return body[: end if end >= 0 else len(body)].decode("ascii", errors="replace")


def encode_bind(
    command: Command, sequence: int, system_id: str, password: str, system_type: str, address_range: str = ""
) -> bytes:
    body = (
        _c(system_id, 16)
        + _c(password, 9)
        + _c(system_type, 13)
        + bytes([INTERFACE_VERSION, 0, 0])  # interface_version, addr_ton, addr_npi
        + _c(address_range, 41)
    )
    return HEADER.pack(HEADER.size + len(body), command, 0, sequence) + body


def encode_empty(command: Command, sequence: int, status: int = 0) -> bytes:
    """enquire_link(_resp), unbind(_resp), generic_nack: a header and nothing else."""
    return HEADER.pack(HEADER.size, command, status, sequence)


def encode_deliver_sm_resp(sequence: int, status: int) -> bytes:
    # message_id is unused in deliver_sm_resp and set to NULL (SMPP 3.4 4.6.2).
    return HEADER.pack(HEADER.size + 1, Command.DELIVER_SM_RESP, status, sequence) + b"\0"


def encode_submit_sm_resp(sequence: int, status: int, message_id: str) -> bytes:
    body = _c(message_id, 65) if status == 0 else b""
    return HEADER.pack(HEADER.size + len(body), Command.SUBMIT_SM_RESP, status, sequence) + body


def _c(value: str, max_size: int) -> bytes:
    encoded = value.encode("ascii")
    if len(encoded) >= max_size:
        raise ValueError(f"{value!r} is longer than {max_size - 1} characters")
    return encoded + b"\0"
