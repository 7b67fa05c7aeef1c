"""A page as headless Chromium (Debian's `chromium`) renders it: its DOM after load, or a
screenshot. .ci/run installs Chromium, so in CI these tests run; elsewhere they are
skipped with how to install it."""

from __future__ import annotations

import asyncio
from pathlib import Path

from tests.support.tools import required_tool

FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--hide-scrollbars",
)


def chromium() -> str:
    return required_tool("chromium", "apt-get install -y chromium")


async def _run(*args: str) -> str:
    """Chromium without blocking the event loop: the page may be served by this process."""
    process = await asyncio.create_subprocess_exec(
        chromium(), *FLAGS, *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    try:
        out, err = await asyncio.wait_for(process.communicate(), 120)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise
    assert process.returncode == 0, err.decode(errors="replace")[-2000:]
    return out.decode()


async def dump_dom(url: str, profile: Path) -> str:
    """The DOM after the page loaded, as HTML."""
    return await _run(f"--user-data-dir={profile}", "--dump-dom", url)


async def screenshot(url: str, path: Path, profile: Path, size: tuple[int, int] = (1100, 900)) -> None:
    await _run(f"--user-data-dir={profile}", f"--window-size={size[0]},{size[1]}", f"--screenshot={path}", url)
