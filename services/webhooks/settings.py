"""Webhook sender settings: `RSMS_*` environment variables (or `.env`), defaults for localhost."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, field_validator

from shared.settings import STOP_SLACK_SECONDS, ServiceSettings


class WebhooksSettings(ServiceSettings):
    accounts_file: Path = Field(Path("var/accounts.toml"), description="Projects, keys and tags (TOML).")
    accounts_reload_seconds: float = Field(1.0, description="How often the accounts file is checked for changes.")

    webhooks_batch_max_events: int = Field(
        100,
        ge=1,
        le=10_000,
        description="Most events in one request; a project's events that arrive together share one.",
    )
    webhooks_batch_max_wait_ms: int = Field(
        100, ge=0, description="A project's first waiting event is sent at most this long after it arrived."
    )
    webhooks_max_concurrent_per_project: int = Field(4, ge=1, description="Requests in flight per project.")
    webhooks_max_waiting_events_per_project: int = Field(
        1_000,
        ge=0,
        description="Events of a project that may wait for one of its requests to finish while its receiver "
        "answers; more (or any, once a request failed) go to the retry queue at once.",
    )
    webhooks_request_timeout_seconds: float = Field(
        10.0, gt=0, description="A request not answered within this long (in total) failed; it is retried."
    )
    webhooks_max_attempts: int = Field(8, ge=1, description="Attempts per delivery; then it is dead-lettered.")
    webhooks_retry_delays_ms: tuple[int, ...] = Field(
        (1_000, 5_000, 30_000, 120_000, 600_000, 1_800_000),
        description="Wait before attempt n+1 is RETRY_DELAYS[n-1]; the last one repeats.",
    )
    webhooks_prefetch: int = Field(
        5_000,
        ge=1,
        le=65_535,
        description="Broker messages held unacknowledged per queue while their events are in flight or waiting.",
    )
    webhooks_publish_timeout_seconds: float = Field(10.0, gt=0, description="Wait this long for a retry's confirm.")
    webhooks_shutdown_seconds: float = Field(
        15.0, gt=0, description="On SIGTERM, how long requests in flight may take."
    )
    webhooks_http_host: str = Field("127.0.0.1", description="Address of /metrics and /health/*.")
    webhooks_http_port: int = Field(8084, description="Port of /metrics and /health/*.")

    @field_validator("webhooks_retry_delays_ms")
    @classmethod
    def _positive_delays(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        if not value or min(value) <= 0:
            raise ValueError("at least one delay, each above 0 ms")
        return value

    def stop_seconds(self) -> float:
        # SIGTERM: the requests in flight finish, then FastStream waits for its
        # subscribers (both bounded by `webhooks_shutdown_seconds`).
        return 2 * self.webhooks_shutdown_seconds + STOP_SLACK_SECONDS
