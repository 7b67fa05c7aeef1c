"""POST /api/v1/sms/send: the one implementation of the send flow, as a plain ASGI application.

The send is nearly all of the API's traffic, and by the profiles (bench/README.md, ingest's
CPU per request, rounds 3 and 4) Litestar's routing, request and response objects and
exception middleware were about a seventh of a single-recipient send's CPU. So the app
(`asgi_entry.IngestApp`) hands every POST to this path straight to `SendEndpoint`, which
reads what it needs from the ASGI scope, answers every outcome itself (the contract's
errors, through `errors.Outcomes`, as Litestar's exception handlers do for the other
routes) and sends the answer as two ASGI messages.

Litestar still routes the path: its `send_sms` route describes the endpoint in the OpenAPI
document, and answers the requests Litestar routes there that the app does not hand over
(the path with a trailing slash, say) through `SendEndpoint.answer`, the same code.
"""

from __future__ import annotations

from collections.abc import Iterable

from litestar.types import HTTPScope, Receive, Send

from services.ingest.body_deadlines import BodyDeadlines
from services.ingest.entry_checks import RequestProgress, count, identify
from services.ingest.errors import Answer, Outcomes
from services.ingest.http_limits import (
    ClientLeft,
    check_header_size,
    declared_too_large,
    receive_send_request,
    too_large,
)
from services.ingest.number_policy import NumberPolicy
from services.ingest.send import SendService
from shared.errors import GatewayError

SEND_PATH = "/api/v1/sms/send"
_JSON_CONTENT_TYPE = (b"content-type", b"application/json")


class RequestHeaders:
    """A request's headers as the ASGI scope gives them, looked up by lower-case name (what
    Litestar's `Headers` answers for these lookups: the first line of a name, or all of them)."""

    __slots__ = ("_first", "raw")

    def __init__(self, raw: Iterable[tuple[bytes, bytes]]) -> None:
        self.raw = raw
        first: dict[bytes, bytes] = {}
        for name, value in raw:
            first.setdefault(name.lower(), value)
        self._first = first

    def first(self, name: bytes) -> bytes | None:
        return self._first.get(name)

    def get(self, name: bytes) -> str | None:
        value = self._first.get(name)
        return None if value is None else value.decode("latin-1")

    def getall(self, name: bytes) -> list[str]:
        return [value.decode("latin-1") for line_name, value in self.raw if line_name.lower() == name]


class SendEndpoint:
    def __init__(
        self,
        send_service: SendService,
        outcomes: Outcomes,
        *,
        max_body_bytes: int,
        body_timeout_seconds: float,
        max_header_bytes: int,
    ) -> None:
        self._send_service = send_service
        self._outcomes = outcomes
        self._max_body_bytes = max_body_bytes
        self._body_timeout_seconds = body_timeout_seconds
        self._max_header_bytes = max_header_bytes
        self._body_deadlines = BodyDeadlines()

    async def __call__(self, scope: HTTPScope, headers: RequestHeaders, receive: Receive, send: Send) -> None:
        client = scope.get("client")
        answer = await self.answer(headers, client[0] if client else "", scope["path"], receive)
        # What Litestar's `Response` sends for the same answer, header for header.
        response_headers = [
            (name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in answer.headers.items()
        ]
        response_headers.append(_JSON_CONTENT_TYPE)
        response_headers.append((b"content-length", str(len(answer.body)).encode()))
        await send({"type": "http.response.start", "status": answer.status, "headers": response_headers})
        await send({"type": "http.response.body", "body": answer.body, "more_body": False})

    async def answer(self, headers: RequestHeaders, peer: str, path: str, receive: Receive) -> Answer:
        """The answer to a send request, whatever happens on the way: the accepted message,
        or the contract's error. `peer` is the socket's address ("" when unknown); `path`
        the request's, for the log."""
        progress = RequestProgress()
        try:
            return await self._accept(progress, headers, peer, receive)
        except GatewayError as error:
            return self._outcomes.refused(SEND_PATH, path, progress, error)
        except ClientLeft:
            return self._outcomes.client_left(path, progress)
        except Exception as exc:  # logged with its traceback; the client gets the contract's 500
            return self._outcomes.unexpected(SEND_PATH, path, progress, exc)

    async def _accept(self, progress: RequestProgress, headers: RequestHeaders, peer: str, receive: Receive) -> Answer:
        check_header_size(headers.raw, self._max_header_bytes)
        if declared_too_large(headers.get(b"content-length"), self._max_body_bytes):
            raise too_large(self._max_body_bytes)
        send_service = self._send_service
        # The key from the headers first: a request without one is answered before its body is
        # read, so nobody without a key can hold a connection open by sending it slowly.
        caller = await identify(
            progress, send_service, headers.get(b"authorization"), peer, headers.getall(b"x-forwarded-for")
        )
        parsed, invalid = await receive_send_request(
            headers.get(b"content-type"),
            receive,
            self._max_body_bytes,
            self._body_timeout_seconds,
            self._body_deadlines,
            NumberPolicy.of(caller.project),
        )
        # `entry_checks.admitted`'s bracket, written out: its generator-based context
        # manager cost a send more than the rest of the bracket's own code.
        admission = await count(progress, send_service, caller, parsed)
        try:
            if invalid is not None:
                raise invalid
            stored = await send_service.accept(caller, admission, headers.get(b"idempotency-key"))
        finally:
            await send_service.release(admission)
        assert parsed is not None
        outcomes = self._outcomes
        outcomes.metrics.accepted_recipients_of(caller.project_id, "yes" if caller.test else "no").inc(
            len(parsed.recipients)
        )
        outcomes.observe(SEND_PATH, "OK", progress)
        # Encoded once (and replayed as is for an Idempotency-Key): the bytes of a SendResponse.
        return Answer(stored.status, admission.rate.headers(), stored.body)
