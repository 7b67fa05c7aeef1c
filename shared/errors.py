"""The contract's error catalogue, and the one domain error every service raises.

Services raise `GatewayError`; only the HTTP edge turns it into a response (see
`services/ingest/errors.py`). The codes and statuses are the contract's and nothing else.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


class ErrorCode(StrEnum):
    UNAUTHORIZED = "UNAUTHORIZED"
    FORBIDDEN = "FORBIDDEN"
    IP_NOT_WHITELISTED = "IP_NOT_WHITELISTED"
    INVALID_TAG = "INVALID_TAG"
    VALIDATION_ERROR = "VALIDATION_ERROR"
    RECIPIENT_BLOCKED = "RECIPIENT_BLOCKED"
    RATE_LIMIT_EXCEEDED = "RATE_LIMIT_EXCEEDED"
    PROVIDER_ERROR = "PROVIDER_ERROR"
    PROVIDER_AUTH_ERROR = "PROVIDER_AUTH_ERROR"
    PROVIDER_NO_CREDITS = "PROVIDER_NO_CREDITS"
    INTERNAL_ERROR = "INTERNAL_ERROR"

    @property
    def http_status(self) -> int:
        return _HTTP_STATUS[self]

    @property
    def default_message(self) -> str:
        return _DEFAULT_MESSAGE[self]


_HTTP_STATUS: dict[ErrorCode, int] = {
    ErrorCode.UNAUTHORIZED: 401,
    ErrorCode.FORBIDDEN: 403,
    ErrorCode.IP_NOT_WHITELISTED: 403,
    ErrorCode.INVALID_TAG: 400,
    ErrorCode.VALIDATION_ERROR: 400,
    ErrorCode.RECIPIENT_BLOCKED: 400,
    ErrorCode.RATE_LIMIT_EXCEEDED: 429,
    ErrorCode.PROVIDER_ERROR: 500,
    ErrorCode.PROVIDER_AUTH_ERROR: 500,
    ErrorCode.PROVIDER_NO_CREDITS: 500,
    ErrorCode.INTERNAL_ERROR: 500,
}

_DEFAULT_MESSAGE: dict[ErrorCode, str] = {
    ErrorCode.UNAUTHORIZED: "Invalid or missing API key",
    ErrorCode.FORBIDDEN: "Valid key but lacks permission",
    ErrorCode.IP_NOT_WHITELISTED: "Request from unauthorized IP address",
    ErrorCode.INVALID_TAG: "Tag not found or inactive",
    ErrorCode.VALIDATION_ERROR: "Invalid request payload",
    ErrorCode.RECIPIENT_BLOCKED: "Recipient blocked by SMS provider",
    ErrorCode.RATE_LIMIT_EXCEEDED: "Rate limit exceeded",
    ErrorCode.PROVIDER_ERROR: "SMS provider error",
    ErrorCode.PROVIDER_AUTH_ERROR: "Provider authentication failed",
    ErrorCode.PROVIDER_NO_CREDITS: "Provider account out of credits",
    ErrorCode.INTERNAL_ERROR: "Unexpected server error",
}


@dataclass
class GatewayError(Exception):
    """A failure the client is told about, in the contract's error shape.

    `status` overrides the code's HTTP status where the contract demands another one for
    the same code (a body over 1 MB is a `VALIDATION_ERROR` answered with 413).
    """

    code: ErrorCode
    message: str = ""
    details: list[str] = field(default_factory=list)
    retry_after: int | None = None
    status: int | None = None

    def __post_init__(self) -> None:
        if not self.message:
            self.message = self.code.default_message
        super().__init__(f"{self.code}: {self.message}")

    @property
    def http_status(self) -> int:
        return self.status if self.status is not None else self.code.http_status

    def body(self) -> dict[str, object]:
        error: dict[str, object] = {"code": self.code.value, "message": self.message}
        if self.details:
            error["details"] = self.details
        if self.retry_after is not None:
            error["retryAfter"] = self.retry_after
        return {"success": False, "error": error}
