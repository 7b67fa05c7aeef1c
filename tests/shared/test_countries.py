"""The country a number is priced and billed as, against `phonenumbers`."""

from __future__ import annotations

import re

import phonenumbers
import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.countries import UNKNOWN_COUNTRY, country_of

e164_numbers = st.from_regex(re.compile(r"\A\+[1-9]\d{1,14}\Z", re.ASCII))


@pytest.mark.parametrize(
    ("number", "country"),
    [
        ("+14165550123", "CA"),  # Toronto
        ("+16475550123", "CA"),  # Toronto overlay
        ("+16045550123", "CA"),  # Vancouver
        ("+15145550123", "CA"),  # Montreal
        ("+15062345678", "CA"),  # New Brunswick
        ("+18765230123", "JM"),  # Jamaica
        ("+12465550123", "BB"),  # Barbados
        ("+17875550123", "PR"),  # Puerto Rico
        ("+12125550123", "US"),  # New York
        ("+12025551234", "US"),  # Washington (the contract's example)
        ("+14155550123", "US"),  # San Francisco
        ("+13055550123", "US"),  # Miami
    ],
)
def test_nanp_area_codes_name_their_country(number: str, country: str) -> None:
    assert country_of(number) == country


@pytest.mark.parametrize(
    ("number", "country"),
    [
        ("+441481256789", "GG"),  # Guernsey, fixed line
        ("+447781123456", "GG"),  # Guernsey, mobile
        ("+441534456789", "JE"),  # Jersey, fixed line
        ("+447797712345", "JE"),  # Jersey, mobile
        ("+441624756789", "IM"),  # Isle of Man, fixed line
        ("+447624123456", "IM"),  # Isle of Man, mobile
        ("+442079460000", "GB"),  # London
        ("+447400123456", "GB"),  # UK mobile
        ("+4407123456789", "GB"),  # the contract's example, with the trunk 0
    ],
)
def test_crown_dependencies_are_not_the_uk(number: str, country: str) -> None:
    assert country_of(number) == country


@pytest.mark.parametrize(
    ("number", "country"),
    [
        ("+262269601234", "YT"),  # Mayotte, fixed line
        ("+262639012345", "YT"),  # Mayotte, mobile
        ("+262262161234", "RE"),  # Réunion, fixed line
        ("+262692123456", "RE"),  # Réunion, mobile
    ],
)
def test_mayotte_is_not_reunion(number: str, country: str) -> None:
    assert country_of(number) == country


@pytest.mark.parametrize(
    ("number", "country"),
    [
        ("+4712345678", "NO"),  # the contract's examples: not valid numbers, still Norway
        ("+4787654321", "NO"),
        ("+46701234567", "SE"),
        ("+4779123456", "SJ"),  # Svalbard, by its leading digits
        ("+77012345678", "KZ"),
        ("+79123456789", "RU"),
        ("+8816123456789", UNKNOWN_COUNTRY),  # satellite: no country
        ("+999999999999999", UNKNOWN_COUNTRY),  # unassigned code
    ],
)
def test_other_shared_codes_and_no_country(number: str, country: str) -> None:
    assert country_of(number) == country


def _shared_code_numbers() -> st.SearchStrategy[str]:
    """Numbers near real ones of every calling code several countries share: an example
    number of each country and type, its tail replaced by any digits."""
    examples = []
    for code, regions in phonenumbers.COUNTRY_CODE_TO_REGION_CODE.items():
        if len(regions) < 2:
            continue
        for region in regions:
            for kind in phonenumbers.PhoneNumberType.values():
                example = phonenumbers.example_number_for_type(region, kind)
                if example is not None:
                    examples.append((f"+{code}", phonenumbers.national_significant_number(example)))

    @st.composite
    def near(draw: st.DrawFn) -> str:
        code, national = draw(st.sampled_from(sorted(set(examples))))
        keep = draw(st.integers(min_value=1, max_value=len(national)))
        tail = draw(st.text("0123456789", min_size=len(national) - keep, max_size=len(national) - keep))
        return code + national[:keep] + tail

    return near()


@given(_shared_code_numbers())
def test_the_prefix_cache_answers_as_phonenumbers_does_for_every_valid_number(number: str) -> None:
    parsed = phonenumbers.parse(number)
    if phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164) != number:
        return  # parse read a trunk prefix into it: not the digits asked about
    region = phonenumbers.region_code_for_number(parsed)
    if region is not None:
        assert country_of(number) == region


@given(e164_numbers)
def test_every_well_formed_number_has_a_country_code_or_zz(number: str) -> None:
    country = country_of(number)
    assert country == UNKNOWN_COUNTRY or country in phonenumbers.SUPPORTED_REGIONS
    code = phonenumbers.COUNTRY_CODE_TO_REGION_CODE
    for digits in (1, 2, 3):
        regions = code.get(int(number[1 : 1 + digits]))
        if regions is not None:
            if regions[0] != "001":
                assert country in regions
            break
    else:
        assert country == UNKNOWN_COUNTRY
