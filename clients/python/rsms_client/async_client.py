"""`AsyncRsmsClient`: the gateway's API from asyncio code, the same as `RsmsClient`."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable
from datetime import date
from types import TracebackType
from typing import Any

import httpx

from rsms_client import _protocol as protocol
from rsms_client._protocol import RetryPolicy
from rsms_client.errors import ApiError, RsmsConnectionError, RsmsError, SendManyError
from rsms_client.models import BulkSendResult, MessageStatus, SendProgress, SendResult, Usage


class AsyncRsmsClient:
    """A client of one gateway with one project's API key.

    >>> async with AsyncRsmsClient("http://127.0.0.1:8080", os.environ["SMS_API_KEY"]) as sms:
    ...     result = await sms.send("demo", ["+4712345678"], "Hello!")

    Errors are raised as `ApiError` (the contract's `code`, `message`, `details`) once
    retries are used up, or `RsmsConnectionError`. Pass `http_client` to use your own
    `httpx.AsyncClient` (proxies, TLS settings); it is then yours to close.
    """

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        timeout: float = 30.0,
        retry: RetryPolicy | None = None,
        http_client: httpx.AsyncClient | None = None,
    ) -> None:
        self._base_url = base_url.rstrip("/")
        self._headers = protocol.auth_headers(api_key)
        self._retry = retry or RetryPolicy()
        self._owns_http = http_client is None
        self._http = http_client or httpx.AsyncClient(timeout=timeout)

    async def send(
        self, tag: str, recipients: Iterable[str], message: str, *, idempotency_key: str | None = None
    ) -> SendResult:
        """Queue `message` to 1-1000 `recipients` (E.164) with the sender of `tag`.

        Every attempt of this send carries the same Idempotency-Key (`idempotency_key`, or
        a new UUID): a retry of a send the gateway did queue queues nothing new. Pass your
        own key (an invoice number) to make a send safe to repeat across process restarts.
        """
        result, _ = await self._send(tag, protocol.recipient_list(recipients), message, idempotency_key)
        return result

    async def send_many(
        self,
        tag: str,
        recipients: Iterable[str],
        message: str,
        *,
        batch_size: int = protocol.MAX_RECIPIENTS_PER_REQUEST,
        idempotency_key: str | None = None,
        progress: Callable[[SendProgress], None] | None = None,
    ) -> BulkSendResult:
        """Queue `message` to any number of recipients: duplicates removed, split into
        requests of `batch_size` (at most 1000), sent one after another within the key's
        rate limit (waiting for its window when the gateway says no request is left, and
        after a 429 for its `Retry-After`). `progress` is called after every batch.

        With `idempotency_key`, batch n is sent with `<idempotency_key>-n`, so the same
        call repeated (after a crash) queues nothing twice. A batch that fails for good
        raises `SendManyError` with what was queued and the recipients not sent.
        """
        batches = protocol.plan_batches(recipients, batch_size)
        total = sum(len(batch) for batch in batches)
        results: list[SendResult] = []
        pause = 0.0
        for index, batch in enumerate(batches):
            await asyncio.sleep(pause)
            key = protocol.batch_idempotency_key(idempotency_key, index)
            try:
                result, response = await self._send(tag, batch, message, key)
            except RsmsError as error:
                raise SendManyError(error, results, [r for b in batches[index:] for r in b]) from error
            results.append(result)
            pause = protocol.rate_limit_pause(response, time.time())
            if progress is not None:
                sent = sum(len(b) for b in batches[: index + 1])
                progress(SendProgress(index + 1, len(batches), sent, total, result))
        return BulkSendResult(results)

    async def status(self, message_id: str) -> MessageStatus:
        """A message's status and each recipient's (404 `VALIDATION_ERROR`: no such message
        in this key's project)."""
        response = await self._request("GET", protocol.status_path(message_id))
        return MessageStatus.from_json(protocol.data_of(response))

    # The same call as RsmsClient's, rather than asyncio.timeout: a 404 is raised at the end.
    async def wait_until_final(
        self,
        message_id: str,
        *,
        timeout: float = 60.0,  # noqa: ASYNC109
        interval: float = 1.0,
    ) -> MessageStatus:
        """Read the status every `interval` seconds (politely: reads count against the key's
        limits) until the message is final (sent, partially_sent or failed: no recipient
        queued or being retried); `TimeoutError` after `timeout` seconds.

        A 404 counts as "not recorded yet" (a gateway without read-after-write answers it
        for a moment after the send) and is raised if the message never shows.
        """
        deadline = time.monotonic() + timeout
        while True:
            missing: ApiError | None = None
            try:
                status = await self.status(message_id)
                if status.final:
                    return status
            except ApiError as error:
                if error.status != 404:
                    raise
                missing = error
            if time.monotonic() + interval > deadline:
                if missing is not None:
                    raise missing
                raise TimeoutError(f"message {message_id} still {status.status} after {timeout:g} s")
            await asyncio.sleep(interval)

    async def usage(self, date_from: date | str, date_to: date | str, group_by: str = "day") -> Usage:
        """Billed usage over whole UTC days `date_from`..`date_to` (both included), grouped
        by `day`, `tag` or `country`."""
        response = await self._request(
            "GET", protocol.USAGE_PATH, params=protocol.usage_params(date_from, date_to, group_by)
        )
        return Usage.from_json(protocol.data_of(response))

    async def aclose(self) -> None:
        if self._owns_http:
            await self._http.aclose()

    async def __aenter__(self) -> AsyncRsmsClient:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        await self.aclose()

    async def _send(
        self, tag: str, recipients: list[str], message: str, idempotency_key: str | None
    ) -> tuple[SendResult, httpx.Response]:
        key = idempotency_key or protocol.new_idempotency_key()
        response = await self._request(
            "POST",
            protocol.SEND_PATH,
            json=protocol.send_body(tag, recipients, message),
            headers={"Idempotency-Key": key},
        )
        return SendResult.from_json(protocol.data_of(response)), response

    async def _request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
    ) -> httpx.Response:
        """One logical request: the same request again after each retryable failure."""
        attempt = 0
        while True:
            attempt += 1
            try:
                response = await self._http.request(
                    method, self._base_url + path, json=json, params=params, headers=self._headers | (headers or {})
                )
            except httpx.TransportError as failure:
                delay = protocol.retry_delay(self._retry, attempt, None)
                if delay is None:
                    raise RsmsConnectionError(f"{method} {path}: {failure!r} ({attempt} attempts)") from failure
            else:
                if response.is_success:
                    return response
                error = protocol.api_error(response)
                delay = protocol.retry_delay(self._retry, attempt, error)
                if delay is None:
                    raise error
            await asyncio.sleep(delay)
