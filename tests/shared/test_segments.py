"""Segment counting by GSM 03.38: the contract's examples and properties that must always hold."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from shared.segments import GSM7_BASIC, GSM7_EXTENSION, count_segments

INVOICE = (
    "Dear customer, this is a reminder that your invoice #12345 for the amount of 500 NOK is due on "
    "January 15, 2026. Please make payment before the due date to avoid late fees. You can pay via our "
    "website, mobile app, or bank transfer. For questions, contact support@example.com. Thank you!"
)

gsm_basic = st.text(alphabet=sorted(GSM7_BASIC), min_size=1, max_size=1000)
gsm_any = st.text(alphabet=sorted(GSM7_BASIC | GSM7_EXTENSION), min_size=1, max_size=1000)
unicode_text = st.text(min_size=1, max_size=1000).filter(lambda t: not (GSM7_BASIC | GSM7_EXTENSION).issuperset(t))


def split(text: str, width: dict[str, int] | None, per_segment: int) -> list[list[str]]:
    """A reference splitter: fill segments character by character, never splitting one."""
    segments: list[list[str]] = [[]]
    used = 0
    for ch in text:
        w = width.get(ch, 1) if width is not None else (2 if ord(ch) > 0xFFFF else 1)
        if used + w > per_segment:
            segments.append([])
            used = 0
        segments[-1].append(ch)
        used += w
    return segments


def test_contract_examples() -> None:
    assert count_segments("a" * 150).segments == 1
    assert count_segments("a" * 200).segments == 2
    assert len(INVOICE) == 286
    assert count_segments(INVOICE).segments == 2
    emoji = count_segments("a" * 99 + "😀")
    assert (emoji.encoding, emoji.units, emoji.segments) == ("UCS-2", 101, 2)


def test_boundaries() -> None:
    assert count_segments("a" * 160).segments == 1
    assert count_segments("a" * 161).segments == 2
    assert count_segments("a" * 306).segments == 2
    assert count_segments("a" * 307).segments == 3
    assert count_segments("ж" * 70).segments == 1
    assert count_segments("ж" * 71).segments == 2
    assert count_segments("ж" * 134).segments == 2
    assert count_segments("ж" * 135).segments == 3


def test_norwegian_letters_are_gsm7() -> None:
    result = count_segments("Hei på deg, Ærlige Øystein og Åse! æøå")
    assert result.encoding == "GSM-7"


def test_extension_characters_take_two_septets() -> None:
    assert count_segments("€" * 80).units == 160
    assert count_segments("€" * 80).segments == 1
    assert count_segments("€" * 81).segments == 2
    assert count_segments("{}[]~|^\\\f").units == 18


def test_escape_pair_is_never_split() -> None:
    # 152 septets, then a two-septet character: it cannot straddle the 153 boundary.
    text = "a" * 152 + "€" + "a" * 152
    assert count_segments(text).units == 306
    assert count_segments(text).segments == 3


def test_surrogate_pair_is_never_split() -> None:
    text = "ж" * 66 + "😀" + "ж" * 66
    assert count_segments(text).units == 134
    assert count_segments(text).segments == 3


def test_one_non_gsm_character_switches_everything_to_ucs2() -> None:
    assert count_segments("a" * 100 + "ç").encoding == "UCS-2"  # only Ç (capital) is in GSM-7
    assert count_segments("a" * 100 + "ç").segments == 2


@given(gsm_basic)
def test_basic_gsm_is_one_septet_per_character(text: str) -> None:
    result = count_segments(text)
    assert result.encoding == "GSM-7"
    assert result.units == len(text)
    expected = 1 if len(text) <= 160 else -(-len(text) // 153)
    assert result.segments == expected


@given(gsm_any)
def test_gsm_segments_match_a_reference_split(text: str) -> None:
    result = count_segments(text)
    width = {ch: 2 for ch in GSM7_EXTENSION}
    assert result.units == sum(width.get(ch, 1) for ch in text)
    if result.units <= 160:
        assert result.segments == 1
    else:
        segments = split(text, width, 153)
        assert result.segments == len(segments)
        assert "".join("".join(s) for s in segments) == text


@given(unicode_text)
def test_ucs2_segments_match_a_reference_split(text: str) -> None:
    result = count_segments(text)
    assert result.encoding == "UCS-2"
    assert result.units == len(text.encode("utf-16-le")) // 2
    if result.units <= 70:
        assert result.segments == 1
    else:
        assert result.segments == len(split(text, None, 67))


@given(st.text(min_size=1, max_size=1000), st.text(min_size=1, max_size=50))
def test_appending_never_reduces_segments(text: str, more: str) -> None:
    assert count_segments(text + more).segments >= count_segments(text).segments


@given(st.text(min_size=1, max_size=1000))
def test_segments_are_enough_to_carry_the_units(text: str) -> None:
    result = count_segments(text)
    single = 160 if result.encoding == "GSM-7" else 70
    multi = 153 if result.encoding == "GSM-7" else 67
    capacity = single if result.segments == 1 else result.segments * multi
    assert result.units <= capacity
    assert result.segments == 1 or result.units > single
