"""Directories only their owner may read: the gateway's data (message bodies in the ledger,
API key hashes in the accounts file) must not be readable by every user of the machine."""

from __future__ import annotations

import stat
from pathlib import Path


def private_directory(path: Path, *, tighten: bool = False) -> Path:
    """Creates `path` and any missing parents 0700 (whatever the umask); returns `path`.

    `tighten`: `path` is the gateway's own data directory, so an existing one open to
    others (made before this rule) is closed to them too. Never asked of a directory the
    user may share with other things (the accounts file's, which can be the working
    directory).
    """
    missing: list[Path] = []
    current = path
    while not current.exists():
        missing.append(current)
        current = current.parent
    for directory in reversed(missing):
        directory.mkdir(mode=0o700, exist_ok=True)  # the umask only narrows it
    if tighten:
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & 0o077:
            path.chmod(mode & 0o700)
    return path
