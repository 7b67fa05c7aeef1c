"""Keeping a service's view of the accounts file current without a restart.

Ingest (keys, tags, limits) and the dispatcher (inbound numbers) both read the accounts
file; `rsms accounts …` edits it. A service re-reads it when its modification time or
size changes, so an edit takes effect within `RSMS_ACCOUNTS_RELOAD_SECONDS`. A file that
does not parse is logged and ignored: the last good accounts stay in force.
"""

from __future__ import annotations

from pathlib import Path

from shared.accounts import AccountsError, AccountsFile, load_accounts
from shared.log import get_logger

log = get_logger(__name__)


class AccountsReloader:
    def __init__(self, path: Path) -> None:
        self._path = path
        self._signature: tuple[int, int] | None = None
        self.accounts = AccountsFile()
        """The last good accounts (none before the first successful load)."""

    def reload(self) -> bool:
        """Re-read the file if it changed; True if new accounts took effect."""
        signature = self._file_signature()
        if signature == self._signature:
            return False
        try:
            accounts = load_accounts(self._path)
        except AccountsError as exc:
            log.error("accounts_file_invalid", path=str(self._path), error=str(exc))
            self._signature = signature
            return False
        self.accounts = accounts
        self._signature = signature
        log.info("accounts_loaded", path=str(self._path), projects=len(accounts.projects))
        return True

    def _file_signature(self) -> tuple[int, int] | None:
        try:
            stat = self._path.stat()
        except FileNotFoundError:
            return None
        return stat.st_mtime_ns, stat.st_size
