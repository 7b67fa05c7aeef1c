"""Validation of a send request body, reporting every problem at once.

Decisions the contract leaves open:
- Unknown fields are refused (`VALIDATION_ERROR`, `<field>: Unknown field`). A misspelt
  optional field silently ignored is worse for an SMS sender than a clear error.
- `message` length is counted in characters (Unicode code points): an emoji is one
  character here, though it costs two UTF-16 units in segment counting.
- The 1,000-recipient limit applies to the array as sent; duplicates are then removed,
  keeping the first occurrence's order.
- A well-formed number the project may not send to (`number_policy.py`) is a problem of
  the request like a malformed one, named by its index in the array as sent.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

import msgspec

from services.ingest.number_policy import NumberPolicy
from shared.errors import ErrorCode, GatewayError

E164 = re.compile(r"\+[1-9]\d{1,14}", re.ASCII)  # \d alone would take any script's digits
MAX_TAG_LENGTH = 50
MAX_RECIPIENTS = 1000
MAX_MESSAGE_LENGTH = 1000
MAX_DETAILS = 50
FIELDS = ("tag", "recipients", "message")

_decoder = msgspec.json.Decoder()


@dataclass(frozen=True, slots=True)
class SendRequest:
    tag: str
    recipients: list[str]
    """Valid E.164 numbers, de-duplicated, in the order first given."""
    message: str


def parse_send_request(body: bytes, *, policy: NumberPolicy | None) -> SendRequest:
    """The request, or a `VALIDATION_ERROR` listing every problem: never another exception,
    whatever the bytes. `policy`: the project's destination rules (None: the form of the
    numbers only)."""
    data = _decode_object(body)
    problems: list[str] = []
    problems.extend(f"{name}: Unknown field" for name in data if name not in FIELDS)
    tag = _check_tag(data.get("tag"), "tag" in data, problems)
    recipients = _check_recipients(data.get("recipients"), "recipients" in data, policy, problems)
    message = _check_message(data.get("message"), "message" in data, problems)
    if problems or not _written_once(body, recipients):
        problems.extend(f"{name}: Duplicate field" for name in _duplicate_keys(body))
    if problems:
        raise _invalid(problems)
    assert tag is not None and recipients is not None and message is not None
    return SendRequest(tag=tag, recipients=list(dict.fromkeys(recipients)), message=message)


def _decode_object(body: bytes) -> dict[str, Any]:
    try:
        data = _decoder.decode(body)
    except UnicodeDecodeError:
        raise _invalid(["body: Malformed JSON (not valid UTF-8)"]) from None
    except RecursionError:
        raise _invalid(["body: Malformed JSON (nested too deeply)"]) from None
    except msgspec.MsgspecError as exc:  # malformed, or a number out of range
        raise _invalid([f"body: Malformed JSON ({exc})"]) from None
    if not isinstance(data, dict):
        raise _invalid(["body: Request body must be a JSON object"])
    return data


def _written_once(body: bytes, recipients: list[str] | None) -> bool:
    """Whether the body of a valid request (its three fields, strings where strings belong)
    wrote no field twice, in one pass over the bytes and no second parse.

    msgspec keeps the last of duplicate keys silently. Every string written in JSON has two
    unescaped quotes, and an escaped quote adds one more; so a body has at least twice as
    many quotes as the strings of what it decoded to, and exactly twice as many only when no
    key was written twice (an overwritten key is one more string) and no quote is escaped.
    The valid request's strings: three keys, tag, message and every recipient. When the
    count does not match (a quote in the message, a duplicate), `_duplicate_keys` decides.
    """
    return recipients is not None and body.count(b'"') == 2 * (5 + len(recipients))


def _duplicate_keys(body: bytes) -> list[str]:
    """Keys written more than once in an object of the body (any depth), by a second parse
    that sees every key. The body already decoded once, so it is well-formed JSON."""
    duplicates: list[str] = []

    def check(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen and key not in duplicates:
                duplicates.append(key)
            seen.add(key)
        return dict(pairs)

    try:
        json.loads(body, object_pairs_hook=check)
    except (ValueError, RecursionError):
        return []  # what the standard library cannot read, msgspec's parse already judged
    return duplicates


def _check_tag(value: Any, present: bool, problems: list[str]) -> str | None:
    if not present:
        problems.append("tag: Field is required")
    elif not isinstance(value, str):
        problems.append(f"tag: Must be a string, not {_json_type(value)}")
    elif not value:
        problems.append("tag: Tag must not be empty")
    elif len(value) > MAX_TAG_LENGTH:
        problems.append(f"tag: Tag exceeds maximum length of {MAX_TAG_LENGTH} characters")
    else:
        return value
    return None


def _check_recipients(value: Any, present: bool, policy: NumberPolicy | None, problems: list[str]) -> list[str] | None:
    if not present:
        problems.append("recipients: Field is required")
        return None
    if not isinstance(value, list):
        problems.append(f"recipients: Must be an array of phone numbers, not {_json_type(value)}")
        return None
    if not value:
        problems.append("recipients: At least 1 recipient is required")
        return None
    valid = True
    if len(value) > MAX_RECIPIENTS:
        problems.append(f"recipients: Too many recipients ({len(value)}); the maximum is {MAX_RECIPIENTS}")
        valid = False
    match = E164.fullmatch
    refusal = policy.refusal if policy is not None else None
    for index, number in enumerate(value):
        if isinstance(number, str) and match(number):
            reason = refusal(number) if refusal is not None else None
            if reason is not None:
                valid = False
                problems.append(f"recipients[{index}]: {_quote(number)}: {reason}")
            continue
        valid = False
        if isinstance(number, str):
            problems.append(f"recipients[{index}]: Invalid phone number format {_quote(number)}")
        else:
            problems.append(f"recipients[{index}]: Must be a string, not {_json_type(number)}")
    return value if valid else None


def _check_message(value: Any, present: bool, problems: list[str]) -> str | None:
    if not present:
        problems.append("message: Field is required")
    elif not isinstance(value, str):
        problems.append(f"message: Must be a string, not {_json_type(value)}")
    elif not value:
        problems.append("message: Message must be at least 1 character")
    elif len(value) > MAX_MESSAGE_LENGTH:
        problems.append(f"message: Message exceeds maximum length of {MAX_MESSAGE_LENGTH} characters")
    else:
        return value
    return None


def _invalid(problems: list[str]) -> GatewayError:
    if len(problems) > MAX_DETAILS:
        more = len(problems) - MAX_DETAILS
        problems = [*problems[:MAX_DETAILS], f"... and {more} more problems"]
    return GatewayError(ErrorCode.VALIDATION_ERROR, details=problems)


def _quote(text: str, limit: int = 40) -> str:
    shown = text if len(text) <= limit else text[:limit] + "…"
    return "'" + shown.replace("'", "\\'") + "'"


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"
