"""Where the CPU goes, from py-spy's collapsed stacks (`py-spy record --format raw`).

    .venv/bin/python -m bench.profile_summary DIR [--top 15]

Reads every `<label>-<service>-<pid>.txt` that `bench.peers --profile DIR` wrote and prints,
per service (all its processes together): the share of samples in which a package or
module appears anywhere on the stack (inclusive: "how much of the service's time is spent
under FastStream, under redis, under structlog …"), and the functions that were on top of
the stack (self time). Idle samples (the event loop waiting in select/epoll) are counted
apart, so the shares are of busy time.
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

# A thread waiting for work is not busy, whatever py-spy's guess of its state (with
# --nonblocking it cannot always tell).
IDLE_LEAVES = (
    "select (selectors.py",
    "poll (selectors.py",
    "Condition.wait (threading.py",
    "Event.wait (threading.py",
    "_worker (concurrent/futures/thread.py",
    "get (queue.py",
    "_wait_for_tstate_lock",
    # A uvicorn worker's thread that answers its supervisor's health checks.
    "_recv (multiprocessing/connection.py",
)
# On every stack of a service (its entry point): they say nothing about where time goes.
SCAFFOLDING = ("<frozen runpy>", "click", "cli", "multiprocessing", "threading", "asyncio/runners.py", "uvloop")
# A Python frame on top of the stack whose time is spent in native code below it.
NATIVE_LEAVES = {
    "Runner.run (asyncio/runners.py)": "uvloop's event loop (C: I/O, callbacks)",
    # uvicorn's protocol hands a read to httptools; what is on top of it is the C parser (its
    # callbacks, Python, are frames of their own).
    "HttpToolsProtocol.data_received (uvicorn/protocols/http/httptools_impl.py)": (
        "httptools' parser (C: reading requests)"
    ),
    "RequestResponseCycle.send (uvicorn/protocols/http/httptools_impl.py)": (
        "uvicorn writing a response (its Python, and uvloop's socket write: C)"
    ),
}
FILE_NAME = re.compile(r"^(?P<label>[^-]+)-(?P<service>[a-z]+)-(?P<pid>\d+)\.txt$")


@dataclass
class Profile:
    samples: int = 0
    idle: int = 0
    inclusive: Counter[str] = field(default_factory=Counter)
    leaves: Counter[str] = field(default_factory=Counter)

    @property
    def busy(self) -> int:
        return self.samples - self.idle


def frame_package(frame: str) -> str:
    """`send (faststream/rabbit/publisher.py:12)` → `faststream`; the project's own code keeps its
    module: `services/ingest/send.py`; the standard library its module: `asyncio/streams.py`."""
    match = re.search(r"\((?P<path>[^:)]+)", frame)
    if match is None:
        return frame
    path = match["path"]
    first = path.split("/")[0]
    if first in ("services", "shared", "cli", "asyncio", "concurrent") or "/" not in path:
        return path
    return first


def frame_function(frame: str) -> str:
    """`send (faststream/rabbit/publisher.py:12)` → `send (faststream/rabbit/publisher.py)`, line dropped."""
    return re.sub(r":\d+\)$", ")", frame.strip())


def read_collapsed(text: str, profile: Profile) -> None:
    """Adds one py-spy raw file (lines `frame;frame;…;leaf count`, root first) to `profile`."""
    for line in text.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [f for f in stack.split(";") if f and not f.startswith("process ") and not f.startswith("thread ")]
        profile.samples += count
        if not frames or any(marker in frames[-1] for marker in IDLE_LEAVES):
            profile.idle += count
            continue
        for package in {frame_package(f) for f in frames}:
            if not package.startswith(SCAFFOLDING):
                profile.inclusive[package] += count
        leaf = frame_function(frames[-1])
        profile.leaves[NATIVE_LEAVES.get(leaf, leaf)] += count


def read_directory(directory: Path) -> dict[str, Profile]:
    profiles: dict[str, Profile] = {}
    for path in sorted(directory.glob("*.txt")):
        match = FILE_NAME.match(path.name)
        if match is None:
            continue
        read_collapsed(path.read_text(errors="replace"), profiles.setdefault(match["service"], Profile()))
    return profiles


def report(profiles: dict[str, Profile], top: int) -> str:
    lines = []
    for service, profile in profiles.items():
        busy = max(profile.busy, 1)
        lines.append(f"## {service}: {profile.samples:,} samples, {profile.busy / max(profile.samples, 1):.0%} busy")
        lines.append("under (inclusive, share of busy samples):")
        lines += [f"  {count / busy:6.1%}  {name}" for name, count in profile.inclusive.most_common(top)]
        lines.append("on top (self):")
        lines += [f"  {count / busy:6.1%}  {name}" for name, count in profile.leaves.most_common(top)]
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("directory", type=Path)
    parser.add_argument("--top", type=int, default=15)
    args = parser.parse_args()
    print(report(read_directory(args.directory), args.top))


if __name__ == "__main__":
    main()
