"""Texts to SMPP short messages and back: GSM-7 / UCS-2, concatenated by UDH or SAR.

The split follows `shared/segments.py` exactly (the gateway bills what that counts): a
text that fits one segment is one part without a header; a longer one is cut greedily
at 153 septets / 67 UTF-16 units per part, and a two-unit character (a GSM-7 escape pair,
a UTF-16 surrogate pair) that does not fit what is left starts the next part. So the
number of parts is always `count_segments(text).segments`.

A 16-bit UDH reference takes one octet more than the 8-bit one, leaving 152 septets / 66
units per part; where that would need more parts than were billed, the message goes with
an 8-bit reference instead (a reference only has to be unique among the concatenations
in flight to one handset, and 256 is plenty for that).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from shared.segments import GSM7_EXTENSION, MULTIPART_SEGMENT_UNITS, count_segments

Concatenation = Literal["udh8", "udh16", "sar"]

DATA_CODING_DEFAULT = 0x00
"""SMSC default alphabet: GSM-7, here."""
DATA_CODING_IA5 = 0x01
DATA_CODING_LATIN1 = 0x03
DATA_CODING_UCS2 = 0x08
ESM_CLASS_UDHI = 0x40

# GSM 03.38 default alphabet in code order; 0x1B is the escape to the extension table.
_GSM7_TABLE = (
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞ\x1bÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
_GSM7_EXTENSION_TABLE = {"\f": 0x0A, "^": 0x14, "{": 0x28, "}": 0x29, "\\": 0x2F, "[": 0x3C, "~": 0x3D, "]": 0x3E}
_GSM7_EXTENSION_TABLE |= {"|": 0x40, "€": 0x65}
_ESCAPE = 0x1B
_CR = 0x0D
_TO_SEPTET = {ch: code for code, ch in enumerate(_GSM7_TABLE) if code != _ESCAPE}
_FROM_SEPTET = dict(enumerate(_GSM7_TABLE))
_FROM_EXTENSION = {code: ch for ch, code in _GSM7_EXTENSION_TABLE.items()}

assert set(_GSM7_EXTENSION_TABLE) == GSM7_EXTENSION, "extension table out of step with shared/segments.py"


@dataclass(frozen=True, slots=True)
class Part:
    """One submit_sm's worth of a message."""

    short_message: bytes
    data_coding: int
    esm_class: int
    sar: tuple[int, int, int] | None = None
    """(reference, total, sequence) for the SAR TLVs; None with UDH or a single part."""


def split_text(text: str, per_part: int | None = None) -> list[str]:
    """The text cut where the billing rule cuts it (`per_part` overrides the part size)."""
    count = count_segments(text)
    if count.segments == 1 and per_part is None:
        return [text]
    size = per_part or MULTIPART_SEGMENT_UNITS[count.encoding]
    gsm7 = count.encoding == "GSM-7"
    parts: list[str] = []
    current: list[str] = []
    used = 0
    for ch in text:
        width = 2 if (ch in GSM7_EXTENSION if gsm7 else ord(ch) > 0xFFFF) else 1
        if used + width > size:
            parts.append("".join(current))
            current, used = [], 0
        current.append(ch)
        used += width
    parts.append("".join(current))
    return parts


def encode_parts(text: str, *, concatenation: Concatenation, gsm7_packed: bool, reference: int) -> list[Part]:
    """The submit_sm payloads of a text; `reference` is a counter the caller advances."""
    count = count_segments(text)
    gsm7 = count.encoding == "GSM-7"
    data_coding = DATA_CODING_DEFAULT if gsm7 else DATA_CODING_UCS2
    if count.segments == 1:
        return [Part(_encode_chunk(text, gsm7, gsm7_packed, b""), data_coding, 0)]
    chunks = split_text(text)
    total = len(chunks)
    if concatenation == "sar":
        ref = reference & 0xFFFF
        return [
            Part(_encode_chunk(chunk, gsm7, gsm7_packed, b""), data_coding, 0, (ref, total, seq))
            for seq, chunk in enumerate(chunks, 1)
        ]
    if concatenation == "udh16":
        narrower = split_text(text, MULTIPART_SEGMENT_UNITS[count.encoding] - 1)
        if len(narrower) == total:
            ref16 = reference & 0xFFFF
            return [
                Part(
                    _encode_chunk(chunk, gsm7, gsm7_packed, bytes([6, 8, 4, ref16 >> 8, ref16 & 0xFF, total, seq])),
                    data_coding,
                    ESM_CLASS_UDHI,
                )
                for seq, chunk in enumerate(narrower, 1)
            ]
    ref8 = reference & 0xFF
    return [
        Part(_encode_chunk(chunk, gsm7, gsm7_packed, bytes([5, 0, 3, ref8, total, seq])), data_coding, ESM_CLASS_UDHI)
        for seq, chunk in enumerate(chunks, 1)
    ]


def _encode_chunk(chunk: str, gsm7: bool, packed: bool, udh: bytes) -> bytes:
    if not gsm7:
        return udh + chunk.encode("utf-16-be")
    septets = gsm7_septets(chunk)
    if not packed:
        return udh + bytes(septets)
    if ends_with_cr_on_octet_boundary(septets, len(udh)) and len(udh) + len(pack_septets(septets, len(udh))) < 140:
        # A receiver drops a CR that ends the last octet (it reads it as the padding CR),
        # so a wanted one there is doubled: CR CR means CR (3GPP TS 23.038 6.1.2.3.1). A
        # full part (140 octets) has no room for it and loses that CR on handsets that
        # follow the rule; the default, unpacked septets, leaves the packing to the SMSC.
        septets = [*septets, _CR]
    return udh + pack_septets(septets, len(udh))


def ends_with_cr_on_octet_boundary(septets: list[int], udh_length: int = 0) -> bool:
    fill = -(-udh_length * 8 // 7)
    return bool(septets) and septets[-1] == _CR and (fill + len(septets)) * 7 % 8 == 0


def gsm7_septets(text: str) -> list[int]:
    septets: list[int] = []
    for ch in text:
        code = _TO_SEPTET.get(ch)
        if code is None:
            septets += (_ESCAPE, _GSM7_EXTENSION_TABLE[ch])
        else:
            septets.append(code)
    return septets


def pack_septets(septets: list[int], udh_length: int = 0) -> bytes:
    """GSM 03.38 packing; after a UDH of `udh_length` octets, from the next septet boundary.

    Where the last octet would end with 7 spare bits, they hold CR, so a receiver does not
    read an extra `@` (3GPP TS 23.038 6.1.2.3.1).
    """
    fill = -(-udh_length * 8 // 7)  # septets the UDH (and its fill bits) occupy
    bits = 0
    nbits = 0
    out = bytearray()
    for septet in [0] * fill + septets:
        bits |= septet << nbits
        nbits += 7
        while nbits >= 8:
            out.append(bits & 0xFF)
            bits >>= 8
            nbits -= 8
    if nbits:
        if nbits == 1:
            bits |= _CR << 1
        out.append(bits & 0xFF)
    return bytes(out[udh_length:])


def unpack_septets(data: bytes, udh_length: int = 0) -> list[int]:
    fill = -(-udh_length * 8 // 7)
    raw = bytes(udh_length) + data
    count = len(raw) * 8 // 7
    value = int.from_bytes(raw, "little")
    septets = [(value >> (7 * i)) & 0x7F for i in range(count)][fill:]
    if len(raw) * 8 % 7 == 0 and septets and septets[-1] == _CR:
        septets.pop()  # CR padding of 7 spare bits (see pack_septets)
    return septets


def decode_gsm7(septets: list[int]) -> str:
    out: list[str] = []
    escaped = False
    for septet in septets:
        if escaped:
            out.append(_FROM_EXTENSION.get(septet, " "))
            escaped = False
        elif septet == _ESCAPE:
            escaped = True
        else:
            out.append(_FROM_SEPTET[septet])
    return "".join(out)


@dataclass(frozen=True, slots=True)
class DecodedPart:
    text: str
    concat: tuple[int, int, int] | None
    """(reference, total, sequence) from the UDH or SAR TLVs; None for a whole message."""


def decode_short_message(
    payload: bytes, data_coding: int, esm_class: int, *, gsm7_packed: bool, sar: tuple[int, int, int] | None
) -> DecodedPart:
    """An inbound deliver_sm's text, with the concatenation header read off."""
    concat = sar
    udh_length = 0
    if esm_class & ESM_CLASS_UDHI and payload:
        udh_length = payload[0] + 1
        concat = _concat_from_udh(payload[1:udh_length]) or concat
    body = payload[udh_length:]
    scheme = data_coding
    if data_coding & 0xF0 == 0xF0:  # message class coding group: bit 2 says 8-bit data, else GSM-7
        scheme = 0x04 if data_coding & 0x04 else DATA_CODING_DEFAULT
    if scheme == DATA_CODING_DEFAULT:
        septets = unpack_septets(body, udh_length) if gsm7_packed else [b & 0x7F for b in body]
        text = decode_gsm7(septets)
    elif scheme == DATA_CODING_UCS2:
        text = body.decode("utf-16-be", errors="replace")
    elif scheme == DATA_CODING_IA5:
        text = body.decode("ascii", errors="replace")
    else:
        text = body.decode("latin-1")
    return DecodedPart(text, concat)


def _concat_from_udh(udh: bytes) -> tuple[int, int, int] | None:
    i = 0
    while i + 1 < len(udh):
        ie, length = udh[i], udh[i + 1]
        data = udh[i + 2 : i + 2 + length]
        if ie == 0x00 and length == 3 and len(data) == 3:
            return data[0], data[1], data[2]
        if ie == 0x08 and length == 4 and len(data) == 4:
            return (data[0] << 8) | data[1], data[2], data[3]
        i += 2 + length
    return None
