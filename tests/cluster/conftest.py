"""The cluster group: every test here builds its own nodes and kills some of them.

Marked `cluster` so the default run (`pytest -n 2`) leaves it out; `.ci/run` runs it on
its own, one test at a time (`pytest -m cluster tests/cluster`).
"""

from __future__ import annotations

import pytest


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/cluster/" in str(item.path).replace("\\", "/"):
            item.add_marker(pytest.mark.cluster)
