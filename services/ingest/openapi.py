"""The OpenAPI description of the API: what Litestar cannot derive from the handlers.

The handlers read their input raw, so that every problem is reported in the contract's
shape after the key and the limits were checked; the send body, the Idempotency-Key
header and the formats of the read parameters are therefore described here. So are the
headers every answer carries (X-RateLimit-*, and Retry-After on a 429 or 500) and one
example of each error code an endpoint answers, taken from the contract's catalogue.
Each route names its `Operation` class below; Litestar builds it with the generated parts.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any, ClassVar

from litestar.openapi import ResponseSpec
from litestar.openapi.spec import (
    Components,
    Example,
    OpenAPIHeader,
    OpenAPIMediaType,
    OpenAPIResponse,
    Operation,
    Parameter,
    Reference,
    RequestBody,
    Schema,
    SecurityScheme,
)
from litestar.openapi.spec.enums import OpenAPIFormat, OpenAPIType

from services.ingest.http_limits import too_large
from services.ingest.idempotency import MAX_KEY_LENGTH
from services.ingest.schemas import ErrorResponse
from shared.errors import ErrorCode, GatewayError
from shared.ledger_queries import not_found

_INTEGER = Schema(type=OpenAPIType.INTEGER, minimum=0)

RATE_LIMIT_HEADERS: dict[str, OpenAPIHeader | Reference] = {
    "X-RateLimit-Limit": OpenAPIHeader(
        schema=_INTEGER,
        description="Requests per minute per key: sends (per tag, on a refusal by the tag limit), or reads "
        "on the status and usage endpoints.",
        example=100,
    ),
    "X-RateLimit-Remaining": OpenAPIHeader(
        schema=_INTEGER, description="Requests left in the current minute.", example=95
    ),
    "X-RateLimit-Reset": OpenAPIHeader(
        schema=_INTEGER,
        description="Unix time (seconds) when the oldest counted request leaves the window.",
        example=1704276000,
    ),
}
RETRY_AFTER_HEADER = OpenAPIHeader(
    schema=Schema(type=OpenAPIType.INTEGER, minimum=1),
    description="Seconds to wait before retrying (also `retryAfter` in the body). On a 500 only where a retry "
    "is expected to succeed shortly (Redis or RabbitMQ unreachable).",
    example=60,
)

# The contract's own examples, word for word; the other codes show the catalogue's message.
_CONTRACT_EXAMPLES: dict[ErrorCode, GatewayError] = {
    ErrorCode.VALIDATION_ERROR: GatewayError(
        ErrorCode.VALIDATION_ERROR,
        details=[
            "recipients[0]: Invalid phone number format '+47abc'",
            "message: Message exceeds maximum length of 1000 characters",
        ],
    ),
    ErrorCode.RATE_LIMIT_EXCEEDED: GatewayError(
        ErrorCode.RATE_LIMIT_EXCEEDED, "Rate limit exceeded. Try again in 60 seconds", retry_after=60
    ),
}


def _example(name: str, error: GatewayError) -> Example:
    return Example(id=name, summary=f"{error.code.value}: {error.message}", value=error.body())


def _errors(description: str, examples: Mapping[str, GatewayError]) -> ResponseSpec:
    return ResponseSpec(
        data_container=ErrorResponse,
        description=description,
        generate_examples=False,
        examples=[_example(name, error) for name, error in examples.items()],
    )


def _catalogue(*codes: ErrorCode) -> dict[str, GatewayError]:
    return {code.value: _CONTRACT_EXAMPLES.get(code, GatewayError(code)) for code in codes}


_COMMON_ERRORS: dict[int, ResponseSpec] = {
    401: _errors("Invalid or missing API key", _catalogue(ErrorCode.UNAUTHORIZED)),
    403: _errors(
        "Request from an address outside the project's allow-list, or a suspended project",
        _catalogue(ErrorCode.IP_NOT_WHITELISTED, ErrorCode.FORBIDDEN),
    ),
    429: _errors("Over a rate limit; retry after `retryAfter` seconds", _catalogue(ErrorCode.RATE_LIMIT_EXCEEDED)),
}

SEND_ERRORS: dict[int, ResponseSpec] = {
    **_COMMON_ERRORS,
    400: _errors(
        "Invalid payload (every problem listed in details), unknown tag or blocked recipient",
        _catalogue(ErrorCode.VALIDATION_ERROR, ErrorCode.INVALID_TAG, ErrorCode.RECIPIENT_BLOCKED),
    ),
    403: _errors(
        "Address outside the allow-list, suspended project, or the project's daily spend cap reached",
        _catalogue(ErrorCode.IP_NOT_WHITELISTED, ErrorCode.FORBIDDEN),
    ),
    413: _errors(
        "Request body over 1 MB",
        {"too_large": too_large(1_048_576)},
    ),
    500: _errors(
        "The provider account cannot send (nothing was queued), or a fault of the gateway",
        _catalogue(
            ErrorCode.PROVIDER_ERROR,
            ErrorCode.PROVIDER_AUTH_ERROR,
            ErrorCode.PROVIDER_NO_CREDITS,
            ErrorCode.INTERNAL_ERROR,
        ),
    ),
}

STATUS_ERRORS: dict[int, ResponseSpec] = {
    **_COMMON_ERRORS,
    400: _errors(
        "messageId is not a UUID",
        {"not_a_uuid": GatewayError(ErrorCode.VALIDATION_ERROR, details=["messageId: not a UUID: 'abc'"])},
    ),
    404: _errors(
        "No such message in this project (another project's message looks the same)",
        {"not_found": not_found("550e8400-e29b-41d4-a716-446655440000")},
    ),
    500: _errors("A fault of the gateway, or the ledger did not answer", _catalogue(ErrorCode.INTERNAL_ERROR)),
}

USAGE_ERRORS: dict[int, ResponseSpec] = {
    **_COMMON_ERRORS,
    400: _errors(
        "A missing or malformed parameter (every problem listed in details)",
        {
            "bad_parameters": GatewayError(
                ErrorCode.VALIDATION_ERROR,
                details=[
                    "from: expected a date like 2026-01-31, got '2026-13-01'",
                    "to: required, a date like 2026-01-31",
                    "groupBy: must be one of day, tag, country, not 'week'",
                ],
            )
        },
    ),
    500: _errors("A fault of the gateway, or the ledger did not answer", _catalogue(ErrorCode.INTERNAL_ERROR)),
}

SEND_REQUEST_SCHEMA = Schema(
    title="SendRequest",
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
            examples=["Your invoice is due."],
        ),
    },
)

SECURITY_COMPONENTS = Components(
    security_schemes={"BearerAuth": SecurityScheme(type="http", scheme="bearer", description="sk_live_… or sk_test_…")}
)


@dataclass
class ApiOperation(Operation):
    """An operation of the public API: every answer carries the rate-limit headers, a 429
    or 500 may carry Retry-After; `parameters_documented` replace the generated ones of the
    same name (the handler reads them raw, so Litestar sees only plain strings)."""

    parameters_documented: ClassVar[tuple[Parameter, ...]] = ()

    def __post_init__(self) -> None:
        for status, response in (self.responses or {}).items():
            if isinstance(response, OpenAPIResponse):
                headers: dict[str, Any] = dict(RATE_LIMIT_HEADERS)
                if status in ("429", "500"):
                    headers["Retry-After"] = RETRY_AFTER_HEADER
                response.headers = headers
                for media in (response.content or {}).values():
                    # Litestar keys the examples by their id but also writes the id into each
                    # example, where OpenAPI 3.1 allows no such field.
                    if media.examples:
                        media.examples = {
                            name: replace(example, id=None) if isinstance(example, Example) else example
                            for name, example in media.examples.items()
                        }
        if self.parameters_documented:
            replaced = {parameter.name for parameter in self.parameters_documented}
            generated = [p for p in self.parameters or [] if not (isinstance(p, Parameter) and p.name in replaced)]
            self.parameters = [*generated, *self.parameters_documented]


@dataclass
class SendOperation(ApiOperation):
    parameters_documented: ClassVar[tuple[Parameter, ...]] = (
        Parameter(
            name="Idempotency-Key",
            param_in="header",
            required=False,
            description="Optional. The same key with the same request within 24 hours answers the first "
            "response and queues nothing new; with a different request it is refused. Reuse it on every retry.",
            schema=Schema(type=OpenAPIType.STRING, min_length=1, max_length=MAX_KEY_LENGTH, pattern=r"^[\x20-\x7E]+$"),
            example="invoice-12345-reminder",
        ),
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        # The handler reads the body raw, so that every problem is reported after auth and
        # the limits, in the contract's shape.
        self.request_body = RequestBody(
            content={"application/json": OpenAPIMediaType(schema=SEND_REQUEST_SCHEMA)},
            required=True,
        )


@dataclass
class StatusOperation(ApiOperation):
    parameters_documented: ClassVar[tuple[Parameter, ...]] = (
        Parameter(
            name="messageId",
            param_in="path",
            required=True,
            description="The `messageId` the send answered.",
            schema=Schema(type=OpenAPIType.STRING, format=OpenAPIFormat.UUID),
        ),
    )


def _day(name: str, description: str) -> Parameter:
    return Parameter(
        name=name,
        param_in="query",
        required=True,
        description=description,
        schema=Schema(type=OpenAPIType.STRING, format=OpenAPIFormat.DATE),
        example="2026-01-31",
    )


@dataclass
class UsageOperation(ApiOperation):
    parameters_documented: ClassVar[tuple[Parameter, ...]] = (
        _day("from", "First UTC day, YYYY-MM-DD (1970-01-01 to 2200-12-31)."),
        _day("to", "Last UTC day, YYYY-MM-DD, included; at most 366 days after `from`."),
        Parameter(
            name="groupBy",
            param_in="query",
            required=False,
            description="Rows per day, tag or destination country.",
            schema=Schema(type=OpenAPIType.STRING, enum=["day", "tag", "country"], default="day"),
        ),
    )
