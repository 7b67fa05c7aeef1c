"""Each project's webhook URL and secret, kept current from the accounts file.

The sender re-reads the file when its modification time or size changes, as the ingest
service does, so `rsms accounts set-webhook` takes effect within a second. A file that does
not parse is logged and ignored: the last good endpoints stay in force.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from shared.accounts import AccountsError, WebhookEndpoint, load_accounts
from shared.log import get_logger

log = get_logger(__name__)


class EndpointDirectory:
    def __init__(self, path: Path) -> None:
        self._path = path
        self._signature: tuple[int, int] | None = None
        self._endpoints: dict[str, WebhookEndpoint] = {}
        self.reload()

    def get(self, project: str) -> WebhookEndpoint | None:
        return self._endpoints.get(project)

    def reload(self) -> bool:
        """Re-read the file if it changed; True if new endpoints took effect."""
        signature = self._file_signature()
        if signature == self._signature:
            return False
        try:
            accounts = load_accounts(self._path)
        except AccountsError as exc:
            log.error("accounts_file_invalid", path=str(self._path), error=str(exc)[:500])
            self._signature = signature
            return False
        self._endpoints = {pid: p.webhook for pid, p in accounts.projects.items() if p.webhook is not None}
        self._signature = signature
        log.info("webhook_endpoints_loaded", path=str(self._path), projects=sorted(self._endpoints))
        return True

    async def watch(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            self.reload()

    def _file_signature(self) -> tuple[int, int] | None:
        try:
            stat = self._path.stat()
        except FileNotFoundError:
            return None
        return stat.st_mtime_ns, stat.st_size
