"""The destination country (ISO 3166 alpha-2) of an E.164 number.

Prices and billing are per country. Parsing every number with `phonenumbers.parse` costs
tens of microseconds, too much for 1,000 recipients per request, so this reads the same
metadata phonenumbers uses directly: the calling code names the country, and where a code
is shared (+1, +7, +44, +47, ...) each smaller country's leading-digit pattern decides,
the code's main country taking the rest. Countries without a leading-digit pattern in
the metadata (Guernsey, Jersey under +44) are billed as the main country.
"""

from __future__ import annotations

import re
from functools import cache

from phonenumbers import COUNTRY_CODE_TO_REGION_CODE, PhoneMetadata

UNKNOWN_COUNTRY = "ZZ"
NON_GEOGRAPHIC = "001"


def country_of(number: str) -> str:
    """`number` is already validated as `+` and 2-15 digits."""
    for length in (1, 2, 3):
        code = int(number[1 : 1 + length])
        plan = _numbering_plan(code)
        if plan is None:
            continue
        main, smaller = plan
        national = number[1 + length :]
        for region, leading_digits in smaller:
            if leading_digits.match(national):
                return region
        return main
    return UNKNOWN_COUNTRY


@cache
def _numbering_plan(code: int) -> tuple[str, list[tuple[str, re.Pattern[str]]]] | None:
    regions = COUNTRY_CODE_TO_REGION_CODE.get(code)
    if not regions:
        return None
    smaller = []
    for region in regions[1:]:
        metadata = PhoneMetadata.metadata_for_region(region)
        if metadata is not None and metadata.leading_digits:
            smaller.append((region, re.compile(metadata.leading_digits)))
    main = UNKNOWN_COUNTRY if regions[0] == NON_GEOGRAPHIC else regions[0]
    return main, smaller
