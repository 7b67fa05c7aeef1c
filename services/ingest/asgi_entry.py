"""Where a request enters the ingest app: a POST to the send path goes straight to
`SendEndpoint` (a plain ASGI application, see `send_endpoint.py` for why), everything
else to Litestar.

The send endpoint takes exactly the requests Litestar would answer with a send itself and
leaves the rest to Litestar as they are: another method, a path Litestar would first have
to normalise (a trailing slash, a root path), and a Host header Litestar refuses (its
400). Litestar routes those of them that are sends to its `send_sms` route, which answers
through `SendEndpoint` too.
"""

from __future__ import annotations

from typing import cast

from litestar import Litestar

# Under Litestar's public API: the rule its router refuses a Host header by (a 400 before
# routing). tests/ingest/test_asgi_entry.py fails loudly if an upgrade moves or changes it.
from litestar._asgi.utils import is_valid_host
from litestar.enums import ScopeType
from litestar.types import HTTPScope, LifeSpanReceive, LifeSpanScope, LifeSpanSend, Receive, Scope, Send

from services.ingest.send_endpoint import SEND_PATH, RequestHeaders, SendEndpoint


class IngestApp(Litestar):
    async def __call__(
        self,
        scope: Scope | LifeSpanScope,
        receive: Receive | LifeSpanReceive,
        send: Send | LifeSpanSend,
    ) -> None:
        if scope["type"] == ScopeType.HTTP:
            http = cast("HTTPScope", scope)
            if http["path"] == SEND_PATH and http["method"] == "POST" and not http.get("root_path"):
                headers = RequestHeaders(http["headers"])
                host = headers.first(b"host")
                if host is None or is_valid_host(host):
                    endpoint: SendEndpoint = self.state.send_endpoint
                    await endpoint(http, headers, cast("Receive", receive), cast("Send", send))
                    return
        await super().__call__(scope, receive, send)
