"""The accounts the ingest service answers with, kept current from the accounts file.

A background task re-reads the file when its modification time or size changes, so
`rsms accounts …` takes effect within a second without a restart. A file that does not
parse is logged and ignored: the last good accounts stay in force.
"""

from __future__ import annotations

import asyncio
import hmac
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address
from pathlib import Path

from shared.accounts import AccountsError, AccountsFile, ApiKeyRecord, Project, load_accounts
from shared.keys import hash_key, key_kind
from shared.log import get_logger

log = get_logger(__name__)


@dataclass(frozen=True, slots=True)
class Caller:
    """Who sent a request, once the key has been verified."""

    project_id: str
    project: Project
    key: ApiKeyRecord

    @property
    def test(self) -> bool:
        return self.key.kind == "test"

    def ip_allowed(self, ip: IPv4Address | IPv6Address) -> bool:
        allowlist = self.project.ip_allowlist
        return not allowlist or any(ip in network for network in allowlist)


class AccountStore:
    def __init__(self, path: Path) -> None:
        self._path = path
        self._signature: tuple[int, int] | None = None
        self._by_hash: dict[str, tuple[str, Project, ApiKeyRecord]] = {}
        self.reload()

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
        self._install(accounts)
        self._signature = signature
        log.info("accounts_loaded", path=str(self._path), projects=len(accounts.projects))
        return True

    async def watch(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            self.reload()

    def authenticate(self, key: str) -> Caller | None:
        if key_kind(key) is None:
            return None
        digest = hash_key(key)
        entry = self._by_hash.get(digest)
        # The lookup is by a hash of the key, which tells an attacker nothing about the
        # stored hashes; the final comparison is constant-time all the same.
        if entry is None or not hmac.compare_digest(entry[2].sha256, digest):
            return None
        project_id, project, record = entry
        return Caller(project_id, project, record)

    def _install(self, accounts: AccountsFile) -> None:
        self._by_hash = {
            record.sha256: (project_id, project, record)
            for project_id, project in accounts.projects.items()
            for record in project.keys
        }

    def _file_signature(self) -> tuple[int, int] | None:
        try:
            stat = self._path.stat()
        except FileNotFoundError:
            return None
        return stat.st_mtime_ns, stat.st_size
