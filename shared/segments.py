"""SMS segment counting by GSM 03.38, the way handsets and carriers count.

- A text made only of the GSM-7 default alphabet and its extension table is sent as
  GSM-7: a default character is one septet, an extension character (`^{}\\[~]|€` and
  form feed) is two (ESC + character). One segment holds 160 septets; a multipart
  message holds 153 per segment (the user data header takes the rest).
- Any other character switches the whole message to UCS-2, counted in UTF-16 code units
  (a character outside the Basic Multilingual Plane, like most emoji, is two). One
  segment holds 70 units; a multipart message 67 per segment.
- A multipart split never breaks an escape pair or a surrogate pair: a two-unit
  character that does not fit in what is left of a segment starts the next one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Encoding = Literal["GSM-7", "UCS-2"]

GSM7_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM7_EXTENSION = frozenset("^{}\\[~]|€\f")
_GSM7_ALL = GSM7_BASIC | GSM7_EXTENSION

SINGLE_SEGMENT_UNITS: dict[Encoding, int] = {"GSM-7": 160, "UCS-2": 70}
MULTIPART_SEGMENT_UNITS: dict[Encoding, int] = {"GSM-7": 153, "UCS-2": 67}


@dataclass(frozen=True, slots=True)
class SegmentCount:
    encoding: Encoding
    units: int
    """Septets for GSM-7, UTF-16 code units for UCS-2."""
    segments: int


def count_segments(text: str) -> SegmentCount:
    if _GSM7_ALL.issuperset(text):
        extension = sum(text.count(ch) for ch in GSM7_EXTENSION) if not GSM7_BASIC.issuperset(text) else 0
        return _pack("GSM-7", text, len(text) + extension, has_pairs=extension > 0)
    units = len(text.encode("utf-16-le")) // 2
    return _pack("UCS-2", text, units, has_pairs=units != len(text))


def _pack(encoding: Encoding, text: str, units: int, *, has_pairs: bool) -> SegmentCount:
    if units <= SINGLE_SEGMENT_UNITS[encoding]:
        return SegmentCount(encoding, units, 1)
    per_segment = MULTIPART_SEGMENT_UNITS[encoding]
    if not has_pairs:
        return SegmentCount(encoding, units, -(-units // per_segment))
    return SegmentCount(encoding, units, _pack_greedily(encoding, text, per_segment))


def _pack_greedily(encoding: Encoding, text: str, per_segment: int) -> int:
    segments, used = 1, 0
    for ch in text:
        width = _width(encoding, ch)
        if used + width > per_segment:
            segments, used = segments + 1, 0
        used += width
    return segments


def _width(encoding: Encoding, ch: str) -> int:
    if encoding == "GSM-7":
        return 2 if ch in GSM7_EXTENSION else 1
    return 2 if ord(ch) > 0xFFFF else 1
