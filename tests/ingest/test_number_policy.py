"""The destination number policy: what is refused, why, and what a project can allow."""

from __future__ import annotations

import json
import re

import phonenumbers
import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.ingest.number_policy import UNASSIGNED, NumberPolicy
from services.ingest.validation import parse_send_request
from shared.accounts import NUMBER_TYPES, Project
from shared.errors import ErrorCode, GatewayError

DEFAULT = NumberPolicy()
EVERY_TYPE = NumberPolicy(allowed_types=frozenset(NUMBER_TYPES))
e164_numbers = st.from_regex(re.compile(r"\A\+[1-9]\d{1,14}\Z", re.ASCII))


@pytest.mark.parametrize(
    "number",
    ["+4712345678", "+4787654321", "+46701234567", "+4407123456789", "+12025551234", "+14165550123", "+441481256789"],
)
def test_the_contracts_examples_and_ordinary_numbers_pass(number: str) -> None:
    assert DEFAULT.refusal(number) is None


@pytest.mark.parametrize(
    ("number", "reason"),
    [
        ("+999999999999999", UNASSIGNED),
        ("+2591234567", UNASSIGNED),  # +259: never assigned
        ("+12", "impossible length for US"),
        ("+4712", "impossible length for NO"),
        ("+47123456789012", "impossible length for NO"),
        ("+4412345", "impossible length for GB"),
    ],
)
def test_numbers_that_cannot_exist_are_refused_whatever_the_project_allows(number: str, reason: str) -> None:
    assert DEFAULT.refusal(number) == reason
    assert EVERY_TYPE.refusal(number) == reason


@pytest.mark.parametrize(
    ("number", "kind", "reason"),
    [
        ("+4782012345", "premium_rate", "premium-rate number not allowed for this project"),  # Norway 820
        ("+19005550123", "premium_rate", "premium-rate number not allowed for this project"),  # US 900
        ("+449098790000", "premium_rate", "premium-rate number not allowed for this project"),  # UK 909
        ("+4781001234", "shared_cost", "shared-cost number not allowed for this project"),  # Norway 810
        ("+8816123456789", "international_network", "international network number (+881) not allowed for this project"),
        ("+882123456789", "international_network", "international network number (+882) not allowed for this project"),
    ],
)
def test_risky_types_are_refused_unless_the_project_allows_them(number: str, kind: str, reason: str) -> None:
    assert DEFAULT.refusal(number) == reason
    assert NumberPolicy(allowed_types=frozenset({kind})).refusal(number) is None  # type: ignore[arg-type]


def test_a_trunk_prefix_does_not_smuggle_a_premium_number() -> None:
    # +44 0909…: `phonenumbers` reads it as the UK premium number 0909…, and so does the policy.
    assert DEFAULT.refusal("+4409098790000") == "premium-rate number not allowed for this project"


def test_a_premium_network_number_needs_both_types_allowed() -> None:
    number = "+979123456789"  # International Premium Rate Service
    assert NumberPolicy(allowed_types=frozenset({"international_network"})).refusal(number) == (
        "premium-rate number not allowed for this project"
    )
    assert NumberPolicy(allowed_types=frozenset({"international_network", "premium_rate"})).refusal(number) is None


def test_the_country_allow_list_tells_canada_from_the_us() -> None:
    us_only = NumberPolicy(allowed_countries=frozenset({"US"}))
    assert us_only.refusal("+12025551234") is None
    assert us_only.refusal("+14165550123") == "destination country CA not allowed for this project"
    nordic = NumberPolicy(allowed_countries=frozenset({"NO", "SE"}))
    assert nordic.refusal("+4712345678") is None and nordic.refusal("+46701234567") is None
    assert nordic.refusal("+4520123456") == "destination country DK not allowed for this project"
    assert nordic.refusal("+4779123456") == "destination country SJ not allowed for this project"


def test_an_international_network_has_no_country_its_type_decides() -> None:
    policy = NumberPolicy(allowed_countries=frozenset({"NO"}), allowed_types=frozenset({"international_network"}))
    assert policy.refusal("+8816123456789") is None


def test_the_policy_is_the_projects() -> None:
    project = Project(name="Acme", allowed_countries=["SE", "NO"], allowed_number_types=["shared_cost"])
    assert NumberPolicy.of(project) == NumberPolicy(frozenset({"NO", "SE"}), frozenset({"shared_cost"}))
    assert NumberPolicy.of(Project(name="Default")) == DEFAULT


@pytest.mark.parametrize(
    "region",
    sorted(
        r
        for r in phonenumbers.SUPPORTED_REGIONS
        if phonenumbers.example_number_for_type(r, phonenumbers.PhoneNumberType.PREMIUM_RATE)
    ),
)
def test_every_countrys_example_premium_number_is_refused_by_default(region: str) -> None:
    example = phonenumbers.example_number_for_type(region, phonenumbers.PhoneNumberType.PREMIUM_RATE)
    number = phonenumbers.format_number(example, phonenumbers.PhoneNumberFormat.E164)
    assert DEFAULT.refusal(number) == "premium-rate number not allowed for this project"
    assert NumberPolicy(allowed_types=frozenset({"premium_rate"})).refusal(number) is None


@given(e164_numbers)
def test_what_the_default_policy_passes_is_possible_and_not_risky_to_phonenumbers(number: str) -> None:
    reason = DEFAULT.refusal(number)
    try:
        parsed = phonenumbers.parse(number)
    except phonenumbers.NumberParseException:
        assert reason is not None
        return
    if reason is None:
        assert phonenumbers.is_possible_number(parsed)
        assert phonenumbers.number_type(parsed) not in (
            phonenumbers.PhoneNumberType.PREMIUM_RATE,
            phonenumbers.PhoneNumberType.SHARED_COST,
        )
        assert phonenumbers.region_code_for_country_code(parsed.country_code) != "001"
    elif reason == UNASSIGNED:
        assert phonenumbers.region_code_for_country_code(parsed.country_code) == "ZZ"


@given(
    e164_numbers, st.frozensets(st.sampled_from(["NO", "US", "CA", "GB"])), st.frozensets(st.sampled_from(NUMBER_TYPES))
)
def test_any_number_under_any_policy_is_passed_or_refused_with_a_reason(
    number: str, countries: frozenset[str], types: frozenset[str]
) -> None:
    reason = NumberPolicy(countries, types).refusal(number)  # type: ignore[arg-type]
    assert reason is None or reason


def test_a_refused_number_is_a_validation_error_naming_it_by_its_index_as_sent() -> None:
    recipients = ["+4712345678", "+4712345678", "+999999999999999", "+8816123456789", "+12", "+4782012345"]
    body = json.dumps({"tag": "t", "recipients": recipients, "message": "hi"}).encode()
    with pytest.raises(GatewayError) as raised:
        parse_send_request(body, policy=DEFAULT)
    assert raised.value.code is ErrorCode.VALIDATION_ERROR
    assert raised.value.details == [
        "recipients[2]: '+999999999999999': unassigned country code",
        "recipients[3]: '+8816123456789': international network number (+881) not allowed for this project",
        "recipients[4]: '+12': impossible length for US",
        "recipients[5]: '+4782012345': premium-rate number not allowed for this project",
    ]
    allowed = NumberPolicy(allowed_types=frozenset({"international_network", "premium_rate"}))
    with pytest.raises(GatewayError) as raised:
        parse_send_request(body, policy=allowed)
    assert len(raised.value.details) == 2  # what no project may send to stays refused
