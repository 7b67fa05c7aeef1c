"""The ledger's data (message bodies) and the accounts file (key hashes) are the owner's
only: directories 0700, the accounts file 0600, whatever the umask."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

from shared import accounts as store

ROOT = Path(__file__).resolve().parents[2]


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_the_embedded_clickhouse_directory_is_created_and_kept_private(tmp_path: Path):
    fresh = tmp_path / "fresh" / "var" / "clickhouse"
    older = tmp_path / "older" / "clickhouse"
    older.mkdir(parents=True, mode=0o755)
    older.chmod(0o755)  # as an installation from before this rule left it
    for data_dir in (fresh, older):
        # chDB allows one data directory per process: each opens in a process of its own.
        subprocess.run(
            [
                sys.executable,
                "-c",
                "import os, sys; os.umask(0o022); from services.ledger.clickhouse import open_client; "
                "open_client('chdb://' + sys.argv[1]).command('SELECT 1')",
                str(data_dir),
            ],
            cwd=ROOT,
            check=True,
            timeout=120,
        )
        assert mode(data_dir) == 0o700, oct(mode(data_dir))
    assert mode(fresh.parent) == 0o700  # var/ too, when the ledger made it


def test_the_accounts_file_is_0600_in_a_0700_directory(tmp_path: Path):
    path = tmp_path / "var" / "accounts.toml"
    previous = os.umask(0o022)
    try:
        with store.editing(path) as data:
            store.create_project(data, "acme", "Acme")
    finally:
        os.umask(previous)
    assert mode(path) == 0o600 and mode(path.parent) == 0o700
