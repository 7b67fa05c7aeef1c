"""/docs works offline: headless Chromium (Debian's, driven by Playwright) opens the API
reference served by `rsms ingest`, and every request it makes stays on the gateway."""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from playwright.async_api import Route, async_playwright
from playwright.async_api import TimeoutError as PlaywrightTimeout

from tests.ingest.conftest import StartIngest
from tests.support.chromium_page import FLAGS, chromium

pytestmark = pytest.mark.slow

SCREENSHOT_DIR = os.environ.get("RSMS_TEST_SCREENSHOT_DIR")  # e.g. docs/img, to refresh the README's picture


async def test_the_api_reference_loads_nothing_from_another_host(start_ingest: StartIngest, tmp_path: Path) -> None:
    served = start_ingest()
    origin = urlsplit(served.url).netloc
    requested: list[str] = []
    elsewhere: list[str] = []

    async def guard(route: Route) -> None:
        url = route.request.url
        requested.append(url)
        if urlsplit(url).netloc != origin:
            elsewhere.append(url)
            await route.abort()  # nothing leaves the machine, whatever the page asks for
        else:
            await route.continue_()

    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=chromium(), args=list(FLAGS), chromium_sandbox=False)
        try:
            context = await browser.new_context(viewport={"width": 1280, "height": 1400})
            await context.route("**/*", guard)
            page = await context.new_page()
            response = await page.goto(f"{served.url}/docs", wait_until="networkidle")
            assert response is not None and response.status == 200
            # Rendered: Swagger UI has built the operations from the inlined description.
            try:
                await page.wait_for_selector(".opblock-summary-path", timeout=15_000)
            except PlaywrightTimeout:
                raise AssertionError(f"/docs did not render; requests to other hosts: {elsewhere}") from None
            paths = await page.locator(".opblock-summary-path").all_inner_texts()
            summaries = await page.locator(".opblock-summary-description").all_inner_texts()
            title = await page.locator(".info .title").inner_text()
            # Open the send operation: its Idempotency-Key header and error examples render too.
            await page.locator(".opblock-summary-path").first.click()
            await page.wait_for_selector("text=Idempotency-Key", timeout=15_000)
            await page.wait_for_load_state("networkidle")
            if SCREENSHOT_DIR:
                await page.screenshot(path=str(Path(SCREENSHOT_DIR) / "api-docs.png"))
            await page.screenshot(path=str(tmp_path / "api-docs.png"))
        finally:
            await browser.close()

    assert elsewhere == [], f"/docs requested other hosts: {elsewhere}"
    assert {urlsplit(url).path for url in requested} >= {
        "/docs",
        "/docs/assets/swagger-ui-bundle.js",
        "/docs/assets/swagger-ui-standalone-preset.js",
        "/docs/assets/swagger-ui.css",
    }
    assert "RSMS Gateway API" in title
    assert [p.replace("\u200b", "") for p in paths] == [
        "/api/v1/sms/send",
        "/api/v1/sms/{messageId}",
        "/api/v1/usage",
    ]
    assert summaries == ["Send SMS", "Message status", "Usage"]


async def test_only_the_ui_files_are_served_as_assets(start_ingest: StartIngest) -> None:
    served = start_ingest()
    async with httpx.AsyncClient(base_url=served.url) as client:
        script = await client.get("/docs/assets/swagger-ui-bundle.js")
        assert script.status_code == 200
        assert script.headers["content-type"].startswith("text/javascript")
        assert b"SwaggerUIBundle" in script.content
        page = await client.get("/docs")
        assert "cdn" not in page.text.lower() and "https://" not in page.text.split("<body>")[0]
        for name in ("index.html", "swagger-initializer.js", "../../../__init__.py"):
            refused = await client.get(f"/docs/assets/{name}")
            assert refused.status_code == 404, name
            assert refused.json()["success"] is False
