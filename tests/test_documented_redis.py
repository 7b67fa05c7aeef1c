"""Every Redis the project tells people to run keeps its data (append-only file): without
it, a restart loses the Idempotency-Keys and a client's retry becomes a second send."""

from __future__ import annotations

import re
from pathlib import Path

from cli.up import check_dependencies
from services.ingest.settings import IngestSettings

ROOT = Path(__file__).resolve().parents[1]


def redis_commands(text: str) -> list[str]:
    return [line for line in text.splitlines() if re.search(r"redis-server\b.*--", line)]


def test_the_readme_and_ci_start_redis_with_an_append_only_file():
    for path in ("README.md", ".ci/run"):
        commands = redis_commands((ROOT / path).read_text())
        assert commands, f"{path} no longer shows how to start Redis: update this test"
        for command in commands:
            assert "--appendonly yes" in command and "--appendonly no" not in command, (path, command)


def test_rsms_up_tells_users_to_start_redis_with_an_append_only_file(free_port):
    settings = IngestSettings(redis_url=f"redis://127.0.0.1:{free_port()}/0", amqp_url="amqp://guest:guest@localhost/")
    (hint,) = [p for p in check_dependencies(settings) if p.startswith("Redis")]
    assert "--appendonly yes" in hint and "--appendonly no" not in hint
