"""The simulator's HTTP app: the provider API (`/v1/*`) and the admin API (`/admin/*`),
and, when `RSMS_PROVIDER_SIM_SMPP_PORT` is set, its SMPP face (`smpp_face.py`) in the same
process, so faults, counters and the admin API are shared.

Bodies are read and written with msgspec directly: the simulator must keep up with tens
of thousands of recipients a second on the same machine as the gateway it measures.
"""

from __future__ import annotations

import asyncio
import hmac
import random
from dataclasses import dataclass, field
from typing import Any

import msgspec
from litestar import Litestar, Request, Response, Router, get, post
from litestar.connection import ASGIConnection
from litestar.exceptions import NotAuthorizedException
from litestar.handlers.base import BaseRouteHandler

from services.provider_sim.delivery_log import DeliveryLog
from services.provider_sim.faults import Faults, FaultsUpdate
from services.provider_sim.receipts import ReceiptReporter
from services.provider_sim.settings import ProviderSimSettings
from services.provider_sim.smpp_face import SmppFace
from services.provider_sim.wire import ErrorBody, InboundRequest, MessageResult, SendRequest, SendResponse

JSON = "application/json"


@dataclass
class SimulatorState:
    token: bytes
    timeout_seconds: float
    faults: Faults
    log: DeliveryLog = field(default_factory=DeliveryLog)
    rng: random.Random = field(default_factory=random.Random)


def _json(body: object, status: int = 200) -> Response[bytes]:
    return Response(msgspec.json.encode(body), status_code=status, media_type=JSON)


def _refusal(state: SimulatorState, request: Request[Any, Any, Any]) -> Response[bytes] | None:
    """The account-wide answers a real provider gives before looking at the messages."""
    faults = state.faults
    if faults.auth_failure or not _presents(request, state.token):
        state.log.counters["auth_failures"] += 1
        return _json(ErrorBody("invalid or revoked token"), 401)
    if faults.no_credits:
        state.log.counters["no_credit_failures"] += 1
        return _json(ErrorBody("insufficient credits"), 402)
    return None


def _initial_faults(settings: ProviderSimSettings) -> Faults:
    return Faults(
        latency_ms=settings.provider_sim_latency_ms, receipt_failure_rate=settings.provider_sim_receipt_failure_rate
    )


def _presents(connection: ASGIConnection[Any, Any, Any, Any], token: bytes) -> bool:
    presented = connection.headers.get("authorization", "").removeprefix("Bearer ").encode()
    return hmac.compare_digest(presented, token)


def create_app(settings: ProviderSimSettings | None = None) -> Litestar:
    settings = settings or ProviderSimSettings()
    state = SimulatorState(
        token=settings.provider_sim_token.encode(),
        timeout_seconds=settings.provider_sim_timeout_seconds,
        faults=_initial_faults(settings),
    )
    decode_send = msgspec.json.Decoder(SendRequest).decode
    receipts = ReceiptReporter(
        delay_seconds=settings.provider_sim_receipt_delay_ms / 1000, counters=state.log.counters, rng=state.rng
    )

    smpp = (
        SmppFace(
            host=settings.provider_sim_host,
            port=settings.provider_sim_smpp_port,
            system_id=settings.provider_sim_smpp_system_id,
            faults=lambda: state.faults,
            counters=state.log.counters,
            rng=state.rng,
            receipt_delay_seconds=settings.provider_sim_receipt_delay_ms / 1000,
        )
        if settings.provider_sim_smpp_port is not None
        else None
    )

    def admin_only(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
        # Faults, counters and every delivered number: the same token as the API (never
        # touched by the auth_failure fault, or the fault could not be switched off).
        if not _presents(connection, state.token):
            raise NotAuthorizedException("the simulator's admin API needs its token (RSMS_PROVIDER_SIM_TOKEN)")

    @post("/v1/messages", status_code=200)
    async def send_messages(request: Request[Any, Any, Any]) -> Response[bytes]:
        counters = state.log.counters
        counters["requests"] += 1
        if (refusal := _refusal(state, request)) is not None:
            return refusal
        faults = state.faults
        if faults.error_rate and state.rng.random() < faults.error_rate:
            counters["errors_5xx"] += 1
            return _json(ErrorBody("temporarily unavailable"), 503)
        try:
            batch = decode_send(await request.body())
        except msgspec.ValidationError as exc:
            return _json(ErrorBody(f"bad request: {exc}"), 400)
        results = [MessageResult(state.log.record(m, faults, state.rng)) for m in batch.messages]
        if batch.callback is not None:
            for message in results:
                for result in message.results:
                    if result.status == "accepted" and result.id is not None:
                        receipts.report(batch.callback, result.id, faults.receipt_failure_rate)
        if faults.timeout_rate and state.rng.random() < faults.timeout_rate:
            # Accepted, but the answer never arrives in time: the gateway must retry with
            # the same references and the duplicates show up here, not on a handset.
            counters["timeouts"] += 1
            await asyncio.sleep(state.timeout_seconds)
            return _json(ErrorBody("gateway timeout"), 504)
        if faults.latency_ms:
            await asyncio.sleep(faults.latency_ms / 1000)
        return _json(SendResponse(results))

    @get("/v1/account")
    async def account(request: Request[Any, Any, Any]) -> Response[bytes]:
        if (refusal := _refusal(state, request)) is not None:
            return refusal
        return _json({"status": "active"})

    @get("/faults")
    async def read_faults() -> Response[bytes]:
        return _json(state.faults)

    @post("/faults", status_code=200)
    async def change_faults(request: Request[Any, Any, Any]) -> Response[bytes]:
        try:
            update = msgspec.json.decode(await request.body(), type=FaultsUpdate)
        except msgspec.ValidationError as exc:
            return _json(ErrorBody(f"bad faults: {exc}"), 400)
        state.faults = update.apply_to(state.faults)
        return _json(state.faults)

    @get("/stats")
    async def stats() -> Response[bytes]:
        return _json(state.log.stats())

    @get("/messages")
    async def messages(limit: int | None = None) -> Response[bytes]:
        deliveries = list(state.log.deliveries.values())
        if limit is not None:
            deliveries = deliveries[-limit:]
        return _json(
            [
                {
                    "reference": d.reference,
                    "to": d.to,
                    "from": d.sender,
                    "id": d.id,
                    "attempts": d.attempts,
                }
                for d in deliveries
            ]
        )

    @get("/smpp/messages")
    async def smpp_messages(limit: int | None = None) -> Response[bytes]:
        """Every submit_sm the SMPP face accepted, one row a part (never the text)."""
        if smpp is None:
            return _json(ErrorBody("the SMPP face is off: set RSMS_PROVIDER_SIM_SMPP_PORT"), 404)
        submitted = smpp.submitted if limit is None else smpp.submitted[-limit:]
        return _json(submitted)

    @post("/smpp/inbound", status_code=200)
    async def smpp_inbound(request: Request[Any, Any, Any]) -> Response[bytes]:
        """An MO message from a handset: `{"from": "+4790000001", "to": "RSMS", "text": "STOP"}`."""
        if smpp is None:
            return _json(ErrorBody("the SMPP face is off: set RSMS_PROVIDER_SIM_SMPP_PORT"), 404)
        try:
            inbound = msgspec.json.decode(await request.body(), type=InboundRequest)
        except msgspec.ValidationError as exc:
            return _json(ErrorBody(f"bad inbound message: {exc}"), 400)
        status = await smpp.inject_inbound(inbound.sender, inbound.to, inbound.text)
        if status is None:
            return _json(ErrorBody("no receiving SMPP bind of the configured system_id is bound"), 409)
        return _json({"deliver_sm_resp_status": status})

    @post("/reset", status_code=200)
    async def reset() -> Response[bytes]:
        state.log.reset()
        if smpp is not None:
            smpp.reset()
        state.faults = _initial_faults(settings)
        return _json(state.faults)

    return Litestar(
        route_handlers=[
            send_messages,
            account,
            Router(
                "/admin",
                route_handlers=[read_faults, change_faults, stats, messages, smpp_messages, smpp_inbound, reset],
                guards=[admin_only],
            ),
        ],
        on_startup=[receipts.start, *([smpp.start] if smpp else [])],
        on_shutdown=[receipts.stop, *([smpp.stop] if smpp else [])],
        openapi_config=None,
        request_max_body_size=64 * 1024 * 1024,
    )
