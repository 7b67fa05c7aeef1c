"""Properties of request validation: never an unexpected exception, every problem reported."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.ingest.number_policy import NumberPolicy
from services.ingest.validation import E164, parse_send_request
from shared.errors import ErrorCode, GatewayError

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=10), children, max_size=5),
    max_leaves=20,
)
valid_numbers = st.from_regex(re.compile(r"\A\+[1-9]\d{1,14}\Z", re.ASCII))


@given(st.binary(max_size=300))
def test_any_bytes_are_accepted_or_a_validation_error(body: bytes) -> None:
    try:
        parse_send_request(body, policy=None)
    except GatewayError as exc:
        assert exc.code is ErrorCode.VALIDATION_ERROR
        assert exc.details


@given(st.dictionaries(st.sampled_from(["tag", "recipients", "message", "extra"]), json_values))
def test_any_json_object_is_accepted_or_a_validation_error(data: dict[str, Any]) -> None:
    try:
        request = parse_send_request(json.dumps(data).encode(), policy=None)
    except GatewayError as exc:
        assert exc.code is ErrorCode.VALIDATION_ERROR
        assert all(":" in d for d in exc.details)
    else:
        assert 1 <= len(request.tag) <= 50
        assert all(E164.fullmatch(n) for n in request.recipients)


@given(st.lists(valid_numbers, min_size=1, max_size=50))
def test_duplicates_are_removed_keeping_order(numbers: list[str]) -> None:
    body = json.dumps({"tag": "t", "recipients": numbers + numbers[::-1], "message": "hi"}).encode()
    request = parse_send_request(body, policy=None)
    assert request.recipients == list(dict.fromkeys(numbers))


@pytest.mark.parametrize(
    "number",
    [
        "12345678",
        "+47 123 45 678",
        "0047123456789",
        "+0123",
        "+1",
        "+1234567890123456",
        "+47abc",
        "+４７",
        "+4٧12345678",  # digits of other scripts are not E.164 digits
    ],
)
def test_contract_invalid_numbers(number: str) -> None:
    with pytest.raises(GatewayError) as raised:
        parse_send_request(json.dumps({"tag": "t", "recipients": [number], "message": "hi"}).encode(), policy=None)
    assert raised.value.details[0].startswith("recipients[0]: Invalid phone number format")


@pytest.mark.parametrize("number", ["+4712345678", "+46701234567", "+4407123456789", "+12025551234"])
def test_contract_valid_numbers(number: str) -> None:
    body = json.dumps({"tag": "t", "recipients": [number], "message": "hi"}).encode()
    assert parse_send_request(body, policy=NumberPolicy())  # the default project's rules


@given(st.binary(max_size=60), st.sampled_from(["tag", "message", "recipients"]))
def test_any_bytes_inside_a_string_are_accepted_or_a_validation_error(raw: bytes, field: str) -> None:
    fields = {"tag": b'"t"', "message": b'"hi"', "recipients": b'["+4712345678"]'}
    fields[field] = b'"' + raw.replace(b"\\", b"").replace(b'"', b"") + b'"'
    body = b"{" + b",".join(b'"' + name.encode() + b'":' + value for name, value in fields.items()) + b"}"
    try:
        parse_send_request(body, policy=None)
    except GatewayError as exc:
        assert exc.code is ErrorCode.VALIDATION_ERROR
        assert exc.details


@pytest.mark.parametrize("depth", [1_000, 10_000, 200_000])
def test_deep_nesting_is_a_validation_error(depth: int) -> None:
    for body in (b"[" * depth + b"]" * depth, b'{"a":' * depth + b"1" + b"}" * depth):
        with pytest.raises(GatewayError) as raised:
            parse_send_request(body, policy=None)
        assert raised.value.code is ErrorCode.VALIDATION_ERROR


text_with_json_syntax = st.text(alphabet=st.sampled_from('ab":,{}[] \\\n\u00e6\U0001f389'), min_size=1, max_size=30)


@given(
    text_with_json_syntax,
    st.lists(valid_numbers, min_size=1, max_size=5),
    st.sampled_from(["tag", "recipients", "message", "other"]),
    st.booleans(),
    st.sampled_from([":", " :", ": ", "\n:\t"]),
)
def test_a_field_written_twice_is_always_refused_and_never_otherwise(
    message: str, numbers: list[str], repeated: str, escape_key: bool, colon: str
) -> None:
    fields = {"tag": "t", "recipients": numbers, "message": message}
    members = [json.dumps(name) + colon + json.dumps(value) for name, value in fields.items()]
    assert parse_send_request(("{" + ",".join(members) + "}").encode(), policy=None).message == message

    key = json.dumps(repeated, ensure_ascii=False)
    if escape_key:  # the same key, spelt with an escape: it is still the same key
        key = '"\\u' + f"{ord(repeated[0]):04x}" + repeated[1:] + '"'
    twice = [*members, key + colon + json.dumps(fields.get(repeated, "x"))]
    if repeated == "other":
        twice.append(key + colon + "1")
    with pytest.raises(GatewayError) as raised:
        parse_send_request(("{" + ",".join(twice) + "}").encode(), policy=None)
    assert f"{repeated}: Duplicate field" in raised.value.details
