"""The baseline for `bench.ingest_send`: a bare Litestar endpoint, served like the gateway.

`POST /api/v1/sms/send` decodes the same JSON body with Litestar's own decoder (msgspec)
and answers a JSON object of the gateway's size and shape, with no auth, Redis, RabbitMQ
or validation: what Litestar and uvicorn alone cost on this machine. The server is built
as `services/ingest/main.py` builds it (`services.ingest.http_server`: the same protocol,
loop, limits, backlog and supervisor, the limits from the same settings), so the ratio
between the two measures the gateway's own work and nothing else.

    .venv/bin/python -m bench.ingest_baseline --port 8099 --workers 1
"""

from __future__ import annotations

import argparse
import uuid
from datetime import UTC, datetime
from typing import Any

from litestar import Litestar, MediaType, Request, get, post

from services.ingest.http_server import serve
from services.ingest.main import ingest_server_config
from services.ingest.settings import IngestSettings


@post("/api/v1/sms/send", status_code=200, media_type=MediaType.JSON)
async def send(request: Request[Any, Any, Any]) -> dict[str, Any]:
    payload = await request.json()
    recipients = payload["recipients"]
    return {
        "success": True,
        "data": {
            "messageId": str(uuid.uuid4()),
            "recipientCount": len(recipients),
            "smsSegmentsPerRecipient": 1,
            "totalSmsSegments": len(recipients),
            "estimatedCost": "0.67 NOK",
            "status": "queued",
            "timestamp": datetime.now(UTC).isoformat(timespec="milliseconds")[:-6] + "Z",
        },
    }


@get("/health/ready", media_type=MediaType.JSON)
async def ready() -> dict[str, str]:
    return {"status": "ok"}


def create_app() -> Litestar:
    return Litestar(route_handlers=[send, ready], debug=False, openapi_config=None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args()
    # Keep in step with services/ingest/main.py: the same server, limits and backlog.
    settings = IngestSettings(ingest_host=args.host, ingest_port=args.port, ingest_workers=args.workers)
    config = ingest_server_config(settings, "bench.ingest_baseline:create_app")
    serve(config)


if __name__ == "__main__":
    main()
