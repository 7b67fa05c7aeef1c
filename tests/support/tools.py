"""Debian tools a few tests need (chromium, promtool): `.ci/run` installs them, so in CI a
missing one fails the test; elsewhere the test is skipped with how to install it."""

from __future__ import annotations

import os
import shutil

import pytest


def required_tool(command: str, install: str) -> str:
    """The path of `command`; `install` is the apt-get line that provides it."""
    found = shutil.which(command)
    if found is None:
        if os.environ.get("CI"):
            pytest.fail(f"{command} is not installed: .ci/run installs it ({install})")
        pytest.skip(f"{command} is not installed ({install})")
    return found
