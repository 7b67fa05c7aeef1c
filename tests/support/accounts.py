"""A real accounts file for tests, written through the same functions the CLI uses."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from shared import accounts as store


@dataclass
class ProjectKeys:
    project: str
    live_key: str
    test_key: str
    live_key_id: str


def add_project(
    path: Path,
    project: str = "acme",
    *,
    tags: dict[str, str] | None = None,
    allowlist: list[str] | None = None,
    limits: store.ProjectLimits | None = None,
    store_bodies: bool = True,
) -> ProjectKeys:
    tags = tags if tags is not None else {"R-COV1RSMS": "RSMS", "RS-COV1RSMS": "RSMS", "billing": "Billing"}
    with store.editing(path) as data:
        store.create_project(data, project, project.title(), store_bodies=store_bodies)
        live, live_key = store.issue_key(data, project, "live")
        _, test_key = store.issue_key(data, project, "test")
        for tag, sender in tags.items():
            store.set_tag(data, project, tag, sender)
        if allowlist:
            store.set_allowlist(data, project, allowlist)
        if limits:
            store.set_limits(data, project, limits)
    return ProjectKeys(project, live_key, test_key, live.id)
