"""The accounts the ingest service answers with, kept current from the accounts file.

A background task re-reads the file when it changes (`shared/accounts_reload.py`), so
`rsms accounts …` takes effect within a second without a restart. A file that does not
parse is logged and ignored: the last good accounts stay in force.
"""

from __future__ import annotations

import asyncio
import hmac
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address
from pathlib import Path

from shared.accounts import AccountsFile, ApiKeyRecord, Project
from shared.accounts_reload import AccountsReloader
from shared.keys import hash_key, key_kind


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
        self._file = AccountsReloader(path)
        self._by_hash: dict[str, tuple[str, Project, ApiKeyRecord]] = {}
        self.reload()

    def reload(self) -> bool:
        """Re-read the file if it changed; True if new accounts took effect."""
        if not self._file.reload():
            return False
        self._install(self._file.accounts)
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
