"""The HTTP API's response bodies and their OpenAPI description, as the contract defines them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import msgspec
from litestar.openapi.spec import (
    Components,
    OpenAPIMediaType,
    Operation,
    RequestBody,
    Schema,
    SecurityScheme,
)
from litestar.openapi.spec.enums import OpenAPIType

from shared.errors import ErrorCode


class SendResult(msgspec.Struct, rename="camel"):
    message_id: str
    recipient_count: int
    sms_segments_per_recipient: int
    total_sms_segments: int
    estimated_cost: str
    status: Literal["queued"]
    timestamp: str


class SendResponse(msgspec.Struct):
    success: bool
    data: SendResult


class ErrorDetail(msgspec.Struct, rename="camel", omit_defaults=True):
    code: ErrorCode
    message: str
    details: list[str] = msgspec.field(default_factory=list)
    retry_after: int | None = None


class ErrorResponse(msgspec.Struct):
    success: bool
    error: ErrorDetail


SEND_REQUEST_SCHEMA = Schema(
    type=OpenAPIType.OBJECT,
    required=["tag", "recipients", "message"],
    additional_properties=False,
    description="Unknown fields are refused with VALIDATION_ERROR.",
    properties={
        "tag": Schema(
            type=OpenAPIType.STRING,
            min_length=1,
            max_length=50,
            examples=["R-COV1RSMS"],
            description="Tag code assigned to your project; it selects the sender name.",
        ),
        "recipients": Schema(
            type=OpenAPIType.ARRAY,
            min_items=1,
            max_items=1000,
            items=Schema(type=OpenAPIType.STRING, pattern=r"^\+[1-9]\d{1,14}$"),
            description="E.164 numbers; duplicates are removed.",
            examples=[["+4712345678", "+4787654321"]],
        ),
        "message": Schema(
            type=OpenAPIType.STRING,
            min_length=1,
            max_length=1000,
            description="1-1000 characters; GSM-7 or UCS-2 segments are counted.",
        ),
    },
)

SECURITY_COMPONENTS = Components(
    security_schemes={"BearerAuth": SecurityScheme(type="http", scheme="bearer", description="sk_live_… or sk_test_…")},
    schemas={"SendRequest": SEND_REQUEST_SCHEMA},
)


@dataclass
class SendOperation(Operation):
    """The send operation with its request body, which the handler reads raw so it can
    report every validation problem in the contract's shape after auth and rate limits."""

    def __post_init__(self) -> None:
        self.request_body = RequestBody(
            content={"application/json": OpenAPIMediaType(schema=SEND_REQUEST_SCHEMA)}, required=True
        )
