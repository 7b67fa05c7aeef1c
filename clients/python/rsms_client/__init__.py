"""Python client of the RSMS Gateway API v1.

`RsmsClient` (blocking) and `AsyncRsmsClient` (asyncio) send, read status and usage with
retries; `verify_webhook` checks the gateway's webhook signatures.
"""

from rsms_client._protocol import VERSION as __version__
from rsms_client._protocol import RetryPolicy
from rsms_client.async_client import AsyncRsmsClient
from rsms_client.client import RsmsClient
from rsms_client.errors import (
    ApiError,
    ErrorCode,
    RsmsConnectionError,
    RsmsError,
    SendManyError,
    WebhookVerificationError,
)
from rsms_client.models import (
    BulkSendResult,
    MessageStatus,
    RecipientStatus,
    SendProgress,
    SendResult,
    StatusSummary,
    Usage,
    UsageRow,
    UsageTotals,
)
from rsms_client.webhooks import WebhookEvent, sign_webhook, verify_webhook

__all__ = [
    "ApiError",
    "AsyncRsmsClient",
    "BulkSendResult",
    "ErrorCode",
    "MessageStatus",
    "RecipientStatus",
    "RetryPolicy",
    "RsmsClient",
    "RsmsConnectionError",
    "RsmsError",
    "SendManyError",
    "SendProgress",
    "SendResult",
    "StatusSummary",
    "Usage",
    "UsageRow",
    "UsageTotals",
    "WebhookEvent",
    "WebhookVerificationError",
    "__version__",
    "sign_webhook",
    "verify_webhook",
]
