"""Each project's webhook URL and secret, kept current from the accounts file.

The file is re-read as ingest and the dispatcher re-read it (`shared/accounts_reload.py`),
so `rsms accounts set-webhook` takes effect within `RSMS_ACCOUNTS_RELOAD_SECONDS`; a file
that does not parse is logged and ignored, and the last good endpoints stay in force.
`bindings.py` re-reads it at each tick, and binds the sender's event queues only while
some project has a webhook.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType

from shared.accounts import AccountsFile, WebhookEndpoint
from shared.accounts_reload import AccountsReloader
from shared.log import get_logger

log = get_logger(__name__)


def webhook_endpoints(accounts: AccountsFile) -> dict[str, WebhookEndpoint]:
    """Each project's webhook, of the projects that have one."""
    return {pid: p.webhook for pid, p in accounts.projects.items() if p.webhook is not None}


class EndpointDirectory:
    def __init__(self, path: Path) -> None:
        self._file = AccountsReloader(path)
        self._endpoints: dict[str, WebhookEndpoint] = {}
        self.reload()

    def get(self, project: str) -> WebhookEndpoint | None:
        return self._endpoints.get(project)

    @property
    def endpoints(self) -> Mapping[str, WebhookEndpoint]:
        """Project → webhook, as last loaded (read-only)."""
        return MappingProxyType(self._endpoints)

    def empty(self) -> bool:
        """No project has a webhook: every event can be let go unread."""
        return not self._endpoints

    def reload(self) -> bool:
        """Re-read the file if it changed; True if new endpoints took effect."""
        if not self._file.reload():
            return False
        self._endpoints = webhook_endpoints(self._file.accounts)
        log.info("webhook_endpoints_loaded", projects=sorted(self._endpoints))
        return True
