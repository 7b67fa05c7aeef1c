"""Texts to SMPP parts: as many parts as were billed, and they reassemble to the text."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from services.dispatcher.smpp.encoding import (
    DATA_CODING_UCS2,
    ESM_CLASS_UDHI,
    Concatenation,
    Part,
    decode_short_message,
    encode_parts,
    ends_with_cr_on_octet_boundary,
    gsm7_septets,
    pack_septets,
    unpack_septets,
)
from shared.segments import GSM7_BASIC, GSM7_EXTENSION, count_segments

_GSM7 = sorted(GSM7_BASIC | GSM7_EXTENSION)
gsm7_texts = st.text(alphabet=st.sampled_from(_GSM7), min_size=1, max_size=700)
# Weighted towards extension characters and astral code points: the pairs a split must not break.
mixed_texts = st.text(
    alphabet=st.one_of(
        st.sampled_from(_GSM7),
        st.sampled_from(sorted(GSM7_EXTENSION)),
        st.sampled_from(["é", "Ж", "中", "😀", "𝄞", "🏽"]),
        st.characters(exclude_categories=("Cs",)),
    ),
    min_size=1,
    max_size=400,
)
concatenations = st.sampled_from(["udh8", "udh16", "sar"])


def _reassemble(parts: list[Part], packed: bool) -> str:
    decoded = [
        decode_short_message(p.short_message, p.data_coding, p.esm_class, gsm7_packed=packed, sar=p.sar) for p in parts
    ]
    if len(parts) > 1:
        assert [d.concat[2] for d in decoded if d.concat] == list(range(1, len(parts) + 1))
        assert {d.concat[1] for d in decoded if d.concat} == {len(parts)}
    return "".join(d.text for d in decoded)


def _spec_reading(chunk: str, part: Part) -> str:
    """What a receiver following 3GPP TS 23.038 reads of a packed GSM-7 part carrying
    `chunk`: a CR ending the last octet is sent doubled where the part has room (CR CR
    means CR), and is read as the padding CR where it has none (a full part)."""
    udh_length = part.short_message[0] + 1 if part.esm_class & ESM_CLASS_UDHI else 0
    if part.data_coding == DATA_CODING_UCS2 or not ends_with_cr_on_octet_boundary(gsm7_septets(chunk), udh_length):
        return chunk
    return chunk[:-1] if len(part.short_message) >= 140 else chunk + "\r"


@given(text=st.one_of(gsm7_texts, mixed_texts), concatenation=concatenations, packed=st.booleans())
def test_parts_are_the_billed_segments_and_reassemble_to_the_text(
    text: str, concatenation: Concatenation, packed: bool
) -> None:
    parts = encode_parts(text, concatenation=concatenation, gsm7_packed=packed, reference=0x1234)
    assert len(parts) == count_segments(text).segments
    if not packed:
        assert _reassemble(parts, packed) == text
        return
    # Packed, the parts carry the same chunks as unpacked ones, read as the spec says.
    unpacked = encode_parts(text, concatenation=concatenation, gsm7_packed=False, reference=0x1234)
    chunks = [_reassemble([p], False) for p in unpacked] if len(unpacked) > 1 else [text]
    assert _reassemble(parts, packed) == "".join(_spec_reading(c, p) for c, p in zip(chunks, parts, strict=True))


def test_a_wanted_cr_ending_the_last_octet_is_doubled() -> None:
    text = "1234567\r"  # 8 septets: 56 bits, the CR ends the 7th octet
    (part,) = encode_parts(text, concatenation="udh8", gsm7_packed=True, reference=1)
    assert unpack_septets(part.short_message) == gsm7_septets(text + "\r")
    assert _reassemble([part], True) == text + "\r"  # CR CR: the CR it means


@given(text=st.one_of(gsm7_texts, mixed_texts), concatenation=concatenations)
def test_every_part_fits_one_sms(text: str, concatenation: Concatenation) -> None:
    # 140 octets on the air: UDH plus packed septets, or UDH plus UTF-16.
    for part in encode_parts(text, concatenation=concatenation, gsm7_packed=True, reference=7):
        assert len(part.short_message) <= 140
    for part in encode_parts(text, concatenation=concatenation, gsm7_packed=False, reference=7):
        if part.data_coding == DATA_CODING_UCS2:
            assert len(part.short_message) <= 140
        else:  # unpacked: one octet a septet, the SMSC packs them
            udh = part.short_message[0] + 1 if part.esm_class & ESM_CLASS_UDHI else 0
            assert -(-udh * 8 // 7) + len(part.short_message) - udh <= 160


@given(text=mixed_texts)
def test_no_part_starts_with_half_a_pair(text: str) -> None:
    for part in encode_parts(text, concatenation="sar", gsm7_packed=False, reference=1):
        if part.data_coding == DATA_CODING_UCS2:
            first = int.from_bytes(part.short_message[:2], "big")
            assert not 0xDC00 <= first <= 0xDFFF  # a low surrogate would mean a split pair
        else:
            decode_short_message(part.short_message, 0, 0, gsm7_packed=False, sar=None)
            assert part.short_message[-1:] != b"\x1b"  # an escape never ends a part


def test_udh_layouts() -> None:
    text = "a" * 200
    udh8 = encode_parts(text, concatenation="udh8", gsm7_packed=False, reference=0x1FF)
    assert [p.short_message[:6] for p in udh8] == [bytes([5, 0, 3, 0xFF, 2, 1]), bytes([5, 0, 3, 0xFF, 2, 2])]
    assert all(p.esm_class == ESM_CLASS_UDHI and p.data_coding == 0 and p.sar is None for p in udh8)
    udh16 = encode_parts(text, concatenation="udh16", gsm7_packed=False, reference=0x1FF)
    assert [p.short_message[:7] for p in udh16] == [bytes([6, 8, 4, 1, 0xFF, 2, 1]), bytes([6, 8, 4, 1, 0xFF, 2, 2])]
    sar = encode_parts(text, concatenation="sar", gsm7_packed=False, reference=0x1FF)
    assert [p.sar for p in sar] == [(0x1FF, 2, 1), (0x1FF, 2, 2)] and all(p.esm_class == 0 for p in sar)
    assert sar[0].short_message == b"a" * 153


def test_udh16_falls_back_to_8_bit_where_it_would_need_an_extra_part() -> None:
    text = "a" * 306  # two parts of 153; at 152 a part it would take three
    parts = encode_parts(text, concatenation="udh16", gsm7_packed=False, reference=5)
    assert len(parts) == 2 and parts[0].short_message[:3] == bytes([5, 0, 3])


def test_single_part_has_no_header_and_ucs2_is_utf16be() -> None:
    (gsm,) = encode_parts("Hello €", concatenation="udh8", gsm7_packed=False, reference=1)
    assert gsm == Part(b"Hello \x1b\x65", 0, 0)
    (ucs,) = encode_parts("Привет 😀", concatenation="udh8", gsm7_packed=False, reference=1)
    assert ucs == Part("Привет 😀".encode("utf-16-be"), DATA_CODING_UCS2, 0)


def test_packing_matches_the_3gpp_example() -> None:
    # "hellohello" packed is the textbook E8329BFD4697D9EC37.
    assert pack_septets(gsm7_septets("hellohello")).hex().upper() == "E8329BFD4697D9EC37"
    assert unpack_septets(bytes.fromhex("E8329BFD4697D9EC37")) == gsm7_septets("hellohello")


def test_seven_spare_bits_hold_cr_not_an_at_sign() -> None:
    septets = gsm7_septets("1234567")  # 49 bits: 7 spare in the last octet
    packed = pack_septets(septets)
    assert packed[-1] >> 1 == 0x0D
    assert unpack_septets(packed) == septets
