"""The exceptions the client raises: the gateway's error answers, and failures to reach it."""

from __future__ import annotations

from enum import StrEnum
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rsms_client.models import SendResult


class ErrorCode(StrEnum):
    """The contract's error catalogue (a `str`: `error.code == "INVALID_TAG"` works too)."""

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


class RsmsError(Exception):
    """Every error this client raises."""


class ApiError(RsmsError):
    """The gateway answered with an error, in the contract's shape.

    `code` is one of `ErrorCode`'s values when the answer came from the gateway; an answer
    in another shape (a proxy's 502 page) gets `HTTP_<status>` and the start of its body as
    the message.
    """

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        details: list[str] | None = None,
        retry_after: int | None = None,
    ) -> None:
        self.status = status
        self.code = code
        self.message = message
        self.details = details or []
        self.retry_after = retry_after
        text = f"{code} ({status}): {message}"
        if self.details:
            text += " [" + "; ".join(self.details) + "]"
        super().__init__(text)


class RsmsConnectionError(RsmsError):
    """The gateway could not be reached, or the connection broke, on every attempt."""


class SendManyError(RsmsError):
    """`send_many()` stopped at a batch that failed for good.

    The batches before it were queued (`sent`); `remaining` are the recipients not sent, in
    order, the failed batch's first: fix the cause and pass them to `send_many()` again.
    The cause is `error` (also `__cause__`).
    """

    def __init__(self, error: RsmsError, sent: list[SendResult], remaining: list[str]) -> None:
        self.error = error
        self.sent = sent
        self.remaining = remaining
        super().__init__(f"{len(sent)} batch(es) queued, {len(remaining)} recipient(s) not sent: {error}")


class WebhookVerificationError(RsmsError):
    """A webhook request whose signature or timestamp does not hold: do not trust its body."""
