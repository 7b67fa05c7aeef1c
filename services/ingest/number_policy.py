"""Which destination numbers a project may send to: the guard against toll fraud.

Refused, whatever the project (a number that cannot be an SMS destination):
- a calling code no country or network has (`+999…`);
- a length no number of the code's main country can have (`+12`), by
  `phonenumbers.is_possible_number` (which reads `+4407123456789`, one of the contract's
  examples, as a UK number written with its trunk prefix 0: possible), and a length only
  dialled within the country (`+4412345`: a UK local number without its area code).

Refused unless the project allows the type (`rsms accounts set-number-types`):
- `premium_rate` and `shared_cost` numbers of the destination country, by the metadata's
  patterns for that country (the receiver earns from the sender's bill);
- `international_network`: the non-geographic codes (+800, +808, +870, +878, +881 and
  +882 satellite and international networks, +883, +888, +979), which cost far more.

And, when the project has a country allow-list (`rsms accounts set-countries`), every
geographic number of another country. International networks have no country: their
type decides alone.

Numbers that are merely unallocated (a possible length, no known block: the contract's
own `+4712345678`) are sent: numbering plans change faster than any metadata, and the
provider is the judge of whether a number is in service.

Cost: this runs for every recipient of every request, so what holds for a whole prefix
(the country, whether the length is possible, which patterns give the type) is looked up
once per prefix and length, with the prefixes of `shared.countries` (the calling code, and
six national digits where a code is shared); what depends on the whole number, the type, is
one compiled pattern per country (premium-rate and shared-cost together), tried only for
countries that have one. `bench/recipient_checks.py` measures it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache

from phonenumbers import (
    NumberParseException,
    PhoneMetadata,
    PhoneNumber,
    ValidationResult,
    is_possible_number_with_reason,
    national_significant_number,
    parse,
)

from shared.accounts import NumberType, Project
from shared.countries import MAX_CACHED_PREFIXES, CallingCode, calling_code_of, country_of, phone_number

UNASSIGNED = "unassigned country code"


@dataclass(frozen=True, slots=True)
class NumberPolicy:
    allowed_countries: frozenset[str] = frozenset()
    """Empty: any country."""
    allowed_types: frozenset[NumberType] = frozenset()
    """Of the types refused by default, those the project may send to."""

    @classmethod
    def of(cls, project: Project) -> NumberPolicy:
        return cls(frozenset(project.allowed_countries), frozenset(project.allowed_number_types))

    def refusal(self, number: str) -> str | None:
        """Why `number` (already `+` and 2-15 digits) may not be sent to; None if it may."""
        code = calling_code_of(number)
        if code is None:
            return UNASSIGNED
        key = (number[: code.prefix_length], len(number))
        prefix = _facts_by_prefix.get(key) or _learn_prefix(key, number, code)
        if code.non_geographic and "international_network" not in self.allowed_types:
            return f"international network number (+{code.code}) not allowed for this project"
        national = number[1 + code.digits :] if prefix.possible_length else _national_after_prefix(number)
        if national is None:
            return f"impossible length for {prefix.where}"
        special = prefix.special.type_of(national) if prefix.special is not None else None
        if special is not None and special not in self.allowed_types:
            return f"{special.replace('_', '-')} number not allowed for this project"
        if self.allowed_countries and not code.non_geographic and prefix.country not in self.allowed_countries:
            return f"destination country {prefix.country} not allowed for this project"
        return None


@dataclass(frozen=True, slots=True)
class _PrefixFacts:
    """What holds for every number of a prefix and length (see `shared.countries`)."""

    country: str
    where: str
    """The country or network, as a refusal names it."""
    possible_length: bool
    special: _SpecialPatterns | None
    """The patterns of the country's (or network's) premium-rate and shared-cost numbers."""


_facts_by_prefix: dict[tuple[str, int], _PrefixFacts] = {}


def _learn_prefix(key: tuple[str, int], number: str, code: CallingCode) -> _PrefixFacts:
    country = country_of(number)
    facts = _PrefixFacts(
        country=country,
        where=f"+{code.code} numbers" if code.non_geographic else code.main_country,
        possible_length=_possible_length(code.code, len(number) - 1 - code.digits),
        special=_special_patterns(code.code if code.non_geographic else country),
    )
    if len(_facts_by_prefix) >= MAX_CACHED_PREFIXES:
        _facts_by_prefix.clear()
    _facts_by_prefix[key] = facts
    return facts


@cache
def _possible_length(code: int, national_length: int) -> bool:
    # Depends on the code's main country (or network) and the length only: any number of
    # that length stands for all of them.
    return national_length > 0 and _possible(phone_number(code, "1" * national_length))


def _possible(number: PhoneNumber) -> bool:
    # A length only dialled within the country (a UK number without its area code) reaches
    # nobody from abroad: impossible too, though `is_possible_number` would take it.
    return bool(is_possible_number_with_reason(number) == ValidationResult.IS_POSSIBLE)


def _national_after_prefix(number: str) -> str | None:
    """The national number of a number of impossible length that `phonenumbers` reads as
    one written with its national (trunk) prefix, such as the contract's `+4407123456789`
    (`+44 7123 456789`), if that is possible; else None.

    Slow (a full `parse`), but only numbers of an impossible length come here. The type
    check then looks at this number, so a trunk prefix cannot smuggle a premium-rate one."""
    try:
        parsed = parse(number)
    except NumberParseException:
        return None
    return str(national_significant_number(parsed)) if _possible(parsed) else None


@dataclass(frozen=True, slots=True)
class _SpecialPatterns:
    either: re.Pattern[str]
    """Premium-rate or shared-cost: the one pattern most numbers are tried against."""
    premium_rate: re.Pattern[str] | None
    valid: re.Pattern[str]
    """The country's general pattern: `phonenumbers` types only numbers that match it."""

    def type_of(self, national: str) -> NumberType | None:
        """Premium-rate, shared-cost or neither, as `phonenumbers.number_type` says."""
        if self.either.fullmatch(national) is None or self.valid.fullmatch(national) is None:
            return None
        if self.premium_rate is not None and self.premium_rate.fullmatch(national):
            return "premium_rate"  # `phonenumbers` tries premium rate first too
        return "shared_cost"


@cache
def _special_patterns(region: str | int) -> _SpecialPatterns | None:
    metadata = (
        PhoneMetadata.metadata_for_nongeo_region(region)
        if isinstance(region, int)
        else PhoneMetadata.metadata_for_region(region)
    )
    if metadata is None:
        return None
    premium_rate, shared_cost = (
        desc.national_number_pattern if desc is not None else None
        for desc in (metadata.premium_rate, metadata.shared_cost)
    )
    special = [p for p in (premium_rate, shared_cost) if p]
    if not special or metadata.general_desc is None or not metadata.general_desc.national_number_pattern:
        return None
    return _SpecialPatterns(
        either=re.compile("|".join(f"(?:{p})" for p in special)),
        premium_rate=re.compile(premium_rate) if premium_rate else None,
        valid=re.compile(metadata.general_desc.national_number_pattern),
    )
