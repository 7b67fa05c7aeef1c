"""The one place that speaks HTTP to the projects' receivers (httpx).

A request has one deadline for all of it (connect, send, wait, read), so a receiver that
trickles its answer is as failed as one that never answers. Redirects are not followed:
a 3xx is an answer that did not take the events. Errors are said without the URL, which
may carry a token of the project's.
"""

from __future__ import annotations

import asyncio

import httpx


class WebhookClient:
    def __init__(self, timeout_seconds: float) -> None:
        self._timeout = timeout_seconds
        # No pool limit: each project's requests are bounded by its slots (`delivery.py`),
        # and a shared limit would let one hanging receiver's connections queue the others.
        self._client = httpx.AsyncClient(
            timeout=httpx.Timeout(timeout_seconds),
            limits=httpx.Limits(max_connections=None, max_keepalive_connections=200),
            follow_redirects=False,
        )

    async def post(self, url: str, headers: dict[str, str], body: bytes) -> str | None:
        """None: the receiver took the events (2xx); otherwise why not, for the retry's record."""
        try:
            async with asyncio.timeout(self._timeout):
                response = await self._client.post(url, content=body, headers=headers)
        except (TimeoutError, httpx.TimeoutException):
            return f"no answer within {self._timeout:g} s"
        except httpx.HTTPError as error:
            return f"request failed: {type(error).__name__}"
        if 200 <= response.status_code < 300:
            return None
        return f"HTTP {response.status_code}"

    async def close(self) -> None:
        await self._client.aclose()
