"""Is a TCP port free to listen on, and if not, which process holds it (Linux: /proc)."""

from __future__ import annotations

import contextlib
import errno
import socket
from pathlib import Path

PROC = Path("/proc")
LISTEN_STATE = "0A"  # TCP_LISTEN in /proc/net/tcp


def port_taken(host: str, port: int) -> bool:
    """Whether listening on host:port would fail. Checked by binding as uvicorn does (with
    SO_REUSEADDR: a port left in TIME_WAIT is free) and without SO_REUSEPORT, so a listener
    that set SO_REUSEPORT, which a second one could otherwise share silently, counts too."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # TIME_WAIT is no owner
        try:
            sock.bind((host, port))
        except OSError as error:
            if error.errno == errno.EADDRINUSE:
                return True
            raise
    return False


def port_owner(port: int) -> str | None:
    """`pid 1234 (python -m cli ingest)` for the process listening on `port`, when this user
    may see it; None otherwise (another user's process, or not Linux)."""
    inodes = _listening_inodes(port)
    if not inodes:
        return None
    for pid_dir in PROC.iterdir():
        if not pid_dir.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            for fd in (pid_dir / "fd").iterdir():
                link = str(fd.readlink())
                if link.startswith("socket:[") and link[8:-1] in inodes:
                    return f"pid {pid_dir.name} ({_command_line(pid_dir)})"
    return None


def _listening_inodes(port: int) -> set[str]:
    inodes = set()
    for table in ("tcp", "tcp6"):
        with contextlib.suppress(OSError):
            for line in (PROC / "net" / table).read_text().splitlines()[1:]:
                fields = line.split()
                local_port = int(fields[1].rsplit(":", 1)[1], 16)
                if local_port == port and fields[3] == LISTEN_STATE:
                    inodes.add(fields[9])
    return inodes


def _command_line(pid_dir: Path) -> str:
    try:
        raw = (pid_dir / "cmdline").read_bytes()
    except OSError:
        return "?"
    words = [word.decode(errors="replace") for word in raw.split(b"\0") if word]
    if words:
        words[0] = Path(words[0]).name  # python, not /work/…/.venv/bin/python
    return " ".join(words)[:80] or "?"
