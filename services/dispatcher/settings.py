"""Dispatcher settings: `RSMS_DISPATCHER_*` / `RSMS_PROVIDER_*` environment variables.

The provider defaults point at the simulator's defaults (`rsms provider-sim`), so a
developer machine works out of the box.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from shared.settings import ServiceSettings


class DispatcherSettings(ServiceSettings):
    dispatcher_prefetch: int = Field(64, description="Jobs a dispatcher holds unacknowledged.")
    dispatcher_max_attempts: int = Field(5, ge=1, description="Send attempts per recipient.")
    dispatcher_retry_delays_ms: tuple[int, ...] = Field(
        (1_000, 5_000, 25_000, 120_000, 600_000),
        description="Wait before attempt n+1 is RETRY_DELAYS[n-1]; the last one repeats.",
    )
    dispatcher_marker_ttl_seconds: int = Field(7 * 86_400, description="How long a per-recipient send marker is kept.")
    dispatcher_publish_timeout_seconds: float = Field(
        10.0, description="Wait this long for the confirm of an outcome event."
    )
    dispatcher_infra_backoff_seconds: float = Field(
        1.0, description="Pause before handing a job back when Redis or RabbitMQ failed."
    )
    dispatcher_shutdown_grace_seconds: float = Field(
        30.0, description="On SIGTERM, how long in-flight jobs may take to finish."
    )
    dispatcher_http_host: str = Field("127.0.0.1", description="Address of /metrics and /health/*.")
    dispatcher_http_port: int = Field(8081, description="Serves /metrics and /health/*.")

    provider_kind: Literal["http"] = Field("http", description="Which provider adapter sends live jobs.")
    provider_url: str = Field("http://127.0.0.1:8090", description="Base URL of the provider's batch API.")
    provider_token: str = Field("sim-token", description="Bearer token for the provider (default: the simulator's).")
    provider_timeout_seconds: float = Field(10.0, description="Timeout of one provider request; then transient.")
    provider_batch_size: int = Field(
        1000,
        ge=1,
        description="Most recipients in one provider request (jobs are merged or split).",
    )
    provider_max_concurrent_requests: int = Field(8, ge=1, description="Provider requests in flight per dispatcher.")
    provider_max_partial_requests: int = Field(
        1, ge=1, description="Requests in flight not yet full; more small sends wait and merge."
    )
    provider_probe_interval_seconds: float = Field(
        5.0, description="While the circuit is open, how often the provider's account is checked."
    )
    provider_state_ttl_seconds: int = Field(
        300, description="The provider state in Redis expires unless a dispatcher renews it."
    )
