"""The ingest service's composition root: builds the app (Litestar, with the send endpoint
in front: `asgi_entry.py`) and wires its parts."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

from faststream.rabbit.schemas import Channel
from litestar import Litestar, MediaType, Response, get
from litestar.datastructures import State
from litestar.di import Provide
from litestar.exceptions import HTTPException
from litestar.openapi import OpenAPIConfig
from redis.exceptions import RedisError

from services.ingest.accepted import AcceptedMessages
from services.ingest.access import AccessControl
from services.ingest.account_store import AccountStore
from services.ingest.api_reference import docs_asset, swagger_ui
from services.ingest.asgi_entry import IngestApp
from services.ingest.errors import Outcomes, handle_gateway_error, handle_http_exception, handle_unexpected
from services.ingest.http_limits import check_request_header_size
from services.ingest.idempotency import IdempotencyStore
from services.ingest.metrics import IngestMetrics
from services.ingest.openapi import SECURITY_COMPONENTS
from services.ingest.pricing import PriceTable
from services.ingest.publish_groups import GroupLimits
from services.ingest.publisher import JobPublisher
from services.ingest.ratelimit import Limits, RateLimiter
from services.ingest.routes import message_status, send_sms, usage
from services.ingest.send import SendService
from services.ingest.send_endpoint import SendEndpoint
from services.ingest.settings import IngestSettings
from shared.broker_connection import connect_when_available
from shared.errors import GatewayError
from shared.gc_tuning import tune_gc
from shared.ledger_queries import LedgerQueries
from shared.log import configure_logging, get_logger
from shared.rabbitmq import PublishHealth, broker_ready, cluster_broker
from shared.redis_connection import connect
from shared.redis_persistence import check_persistence, readiness_detail, warn_unless_persistent
from shared.topology import declare_topology

log = get_logger(__name__)


def create_app(settings: IngestSettings | None = None) -> Litestar:
    """The app; without settings (as the server's workers call it), from the environment."""
    if settings is None:
        settings = IngestSettings()
        configure_logging("ingest", settings.log_level, settings.log_format)
    metrics = IngestMetrics()
    outcomes = Outcomes(
        metrics,
        requests_per_minute=settings.requests_per_minute,
        reads_per_minute=settings.reads_per_minute,
    )

    @contextlib.asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        redis = connect(
            settings.redis_url,
            # A confirmed write waits for its replicas on top of the command's own time.
            socket_timeout=settings.redis_timeout_seconds + settings.redis_wait_timeout_ms / 1000,
            socket_connect_timeout=settings.redis_timeout_seconds,
        )
        publishes = PublishHealth()
        broker = cluster_broker(
            settings.amqp_url,
            default_channel=Channel(publisher_confirms=True, on_return_raises=True),
            logger=None,
            publishes=publishes,
        )
        accounts = AccountStore(settings.accounts_file)
        defaults = Limits(
            settings.requests_per_minute,
            settings.tag_requests_per_minute,
            settings.concurrent_requests,
            settings.reads_per_minute,
        )
        access = AccessControl(accounts, defaults, settings.trusted_proxies)
        idempotency = IdempotencyStore(
            redis,
            ttl_seconds=settings.idempotency_ttl_seconds,
            wait_seconds=settings.publish_timeout_seconds,
            # A live holder answers within a publish and a Redis write of its claim; three
            # times that, and its claim is a dead process's.
            stale_after_seconds=3 * (settings.publish_timeout_seconds + settings.redis_timeout_seconds),
            durability=settings.redis_durability(),
        )
        accepted = AcceptedMessages(redis, ttl_seconds=settings.accepted_status_ttl_seconds)
        publisher = JobPublisher(
            broker,
            metrics=metrics,
            health=publishes,
            timeout=settings.publish_timeout_seconds,
            limits=GroupLimits(
                max_jobs=settings.publish_group_max_jobs,
                max_bytes=settings.publish_group_max_bytes,
                max_wait_seconds=settings.publish_group_max_wait_ms / 1000,
                max_in_flight=settings.publish_group_max_in_flight or None,
            ),
        )
        send_service = SendService(
            access=access,
            limiter=RateLimiter(redis, slot_seconds=settings.concurrency_slot_seconds),
            idempotency=idempotency,
            publisher=publisher,
            prices=PriceTable(settings.currency, settings.default_price_per_segment, settings.prices_per_segment),
            accepted=accepted,
        )
        app.state.update(
            send_service=send_service,
            send_endpoint=SendEndpoint(
                send_service,
                outcomes,
                max_body_bytes=settings.max_body_bytes,
                body_timeout_seconds=settings.body_timeout_seconds,
                max_header_bytes=settings.max_header_bytes,
            ),
            accepted=accepted,
            redis=redis,
            broker=broker,
            publishes=publishes,
            ledger=LedgerQueries(broker, timeout=settings.ledger_query_timeout_seconds),
        )
        await warn_unless_persistent(redis, "ingest")  # Idempotency-Keys must outlive a restart
        watcher = asyncio.create_task(accounts.watch(settings.accounts_reload_seconds))

        # The service starts even while RabbitMQ is down: sends answer the contract's error
        # until the connection is there.
        async def set_up_broker() -> None:
            await declare_topology(broker)
            await publisher.open()

        connector = asyncio.create_task(connect_when_available(broker, set_up_broker))
        await asyncio.wait([connector], timeout=settings.publish_timeout_seconds)
        # Full garbage collections stopped each worker for 60-390 ms every 1-3 s under load
        # (they walked the start-up heap each time): freeze it once started (shared/gc_tuning.py).
        tune_gc(settings.gc_gen0_threshold, settings.gc_freeze)
        try:
            yield
        finally:
            watcher.cancel()
            connector.cancel()
            await idempotency.close()
            await publisher.close()
            await broker.stop()
            await redis.aclose()

    return IngestApp(
        route_handlers=[send_sms, message_status, usage, docs_asset, health_live, health_ready],
        dependencies={
            "send_service": Provide(_state("send_service"), sync_to_thread=False),
            "ledger": Provide(_state("ledger"), sync_to_thread=False),
            "accepted": Provide(_state("accepted"), sync_to_thread=False),
        },
        exception_handlers={
            GatewayError: handle_gateway_error,
            HTTPException: handle_http_exception,
            Exception: handle_unexpected,
        },
        lifespan=[lifespan],
        state=State(
            {
                "outcomes": outcomes,
                "max_body_bytes": settings.max_body_bytes,
                "max_header_bytes": settings.max_header_bytes,
            }
        ),
        request_max_body_size=settings.max_body_bytes,
        before_request=check_request_header_size,
        openapi_config=OpenAPIConfig(
            title="RSMS Gateway API",
            version="1.0.0",
            description="Send SMS to up to 1,000 recipients per request; every segment is on record.",
            components=SECURITY_COMPONENTS,
            security=[{"BearerAuth": []}],
            path="/docs",
            render_plugins=[swagger_ui()],  # offline: its assets are served by this app
        ),
        debug=False,
        # Logging is configured once, by `configure_logging` (structured lines): Litestar's
        # default would put its own plain-text handler on the root logger at startup.
        logging_config=None,
    )


def _state(name: str) -> Any:
    def provide(state: State) -> Any:
        return state[name]

    return provide


@get("/health/live", include_in_schema=False, media_type=MediaType.JSON)
async def health_live() -> dict[str, str]:
    return {"status": "ok"}


@get("/health/ready", include_in_schema=False, media_type=MediaType.JSON)
async def health_ready(state: State) -> Response[dict[str, Any]]:
    checks: dict[str, bool] = {}
    try:
        checks["redis"] = bool(await state.redis.ping())
    except (RedisError, OSError):
        checks["redis"] = False
    # Connected, publishes not refused (a node lost, a queue without its leader) and the
    # ledger's reply consumer attached once it was started.
    checks["rabbitmq"] = await broker_ready(state.broker, state.publishes) and not state.ledger.reply_consumer_missing()
    ok = all(checks.values())
    # Informative, not a condition of readiness: a throwaway Redis serves, but loudly.
    details = {"redis_persistence": readiness_detail(await check_persistence(state.redis))}
    return Response(
        {"status": "ok" if ok else "unavailable", "checks": checks, "details": details},
        status_code=200 if ok else 503,
    )
