"""The destination country (ISO 3166 alpha-2) of an E.164 number, as `phonenumbers` says.

Prices and billing are per country. Most calling codes belong to one country; where a
code is shared (+1 by the US, Canada and the Caribbean, +44 by the UK and the Crown
dependencies, +262 by Réunion and Mayotte, ...) the country is the one whose numbering
plan the number is valid in (`phonenumbers.region_code_for_number`), and a number valid in
none of them (unallocated, such as the contract's `+4712345678`) goes to the first
country whose leading-digit pattern it matches, else to the code's main country.

Asking `phonenumbers` costs about 10 µs per number of a shared code, too much for 1,000
recipients per request, so the answer is cached by prefix: the calling code and the
first `DECISIVE_DIGITS` national digits (and the length). That holds because every
shared numbering plan in the metadata gives whole prefixes of that length to one
country: an area code and exchange in the NANP (`+1 416 555`), the Crown dependencies'
and Mayotte's blocks (`+44 1481`, `+262 269 60`). A number that is not valid anywhere
and shares its prefix with valid ones gets the valid ones' country.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache

from phonenumbers import COUNTRY_CODE_TO_REGION_CODE, PhoneMetadata, PhoneNumber, region_code_for_number

UNKNOWN_COUNTRY = "ZZ"
NON_GEOGRAPHIC = "001"
DECISIVE_DIGITS = 6
MAX_CACHED_PREFIXES = 100_000
"""Bounds the prefix cache's memory: it starts over when full (a few MB)."""


@dataclass(frozen=True, slots=True)
class CallingCode:
    code: int
    digits: int
    """How many digits the code has: the national number starts after `+` and these."""
    regions: tuple[str, ...]
    prefix_length: int
    """How much of a number (with its `+`) decides its country."""
    non_geographic: bool
    """An international network or service (+800, +881 satellite phones, +882, ...)."""
    main_country: str
    only_country: str | None
    """The country of every number of the code, unless several share it."""

    @classmethod
    def of(cls, code: int, regions: tuple[str, ...]) -> CallingCode:
        digits = len(str(code))
        non_geographic = regions[0] == NON_GEOGRAPHIC
        main_country = UNKNOWN_COUNTRY if non_geographic else regions[0]
        shared = len(regions) > 1
        return cls(
            code=code,
            digits=digits,
            regions=regions,
            prefix_length=1 + digits + (DECISIVE_DIGITS if shared else 0),
            non_geographic=non_geographic,
            main_country=main_country,
            only_country=None if shared else main_country,
        )


def _codes_by_first_digits() -> dict[str, CallingCode]:
    """Every `+` and one to three digits a number can start with, to the assigned code it
    starts with (codes are prefix-free): one lookup per number."""
    codes = {f"+{code}": CallingCode.of(code, tuple(regions)) for code, regions in COUNTRY_CODE_TO_REGION_CODE.items()}
    by_start = {}
    for start in (f"+{digits}" for digits in range(1, 1000)):
        code = codes.get(start[:2]) or codes.get(start[:3]) or codes.get(start)
        if code is not None:
            by_start[start] = code
    return by_start


_CODES = _codes_by_first_digits()
_countries_by_prefix: dict[tuple[str, int], str] = {}


def calling_code_of(number: str) -> CallingCode | None:
    """The assigned calling code `number` starts with, or None."""
    return _CODES.get(number[:4])


def country_of(number: str) -> str:
    """`number` is already validated as `+` and 2-15 digits."""
    code = _CODES.get(number[:4])
    if code is None:
        return UNKNOWN_COUNTRY
    if code.only_country is not None:
        return code.only_country
    key = (number[: code.prefix_length], len(number))
    country = _countries_by_prefix.get(key)
    if country is None:
        country = _country_in_shared_code(code, number[1 + code.digits :])
        if len(_countries_by_prefix) >= MAX_CACHED_PREFIXES:
            _countries_by_prefix.clear()
        _countries_by_prefix[key] = country
    return country


def phone_number(code: int, national: str) -> PhoneNumber:
    """`phonenumbers`' object for the number, built from its digits without `parse` (which
    costs five times as much and would strip what it takes for a national prefix)."""
    zeros = len(national[:-1]) - len(national[:-1].lstrip("0"))  # as `parse` counts them
    return PhoneNumber(
        country_code=code,
        national_number=int(national),
        italian_leading_zero=True if zeros else None,
        number_of_leading_zeros=zeros if zeros > 1 else None,
    )


def _country_in_shared_code(code: CallingCode, national: str) -> str:
    if national:
        region = region_code_for_number(phone_number(code.code, national))
        if region is not None:
            return str(region)
    for region, leading_digits in _leading_digit_patterns(code.code):
        if leading_digits.match(national):
            return region
    return code.main_country


@cache
def _leading_digit_patterns(code: int) -> list[tuple[str, re.Pattern[str]]]:
    patterns = []
    for region in COUNTRY_CODE_TO_REGION_CODE[code]:
        metadata = PhoneMetadata.metadata_for_region(region)
        if metadata is not None and metadata.leading_digits:
            patterns.append((region, re.compile(metadata.leading_digits)))
    return patterns
