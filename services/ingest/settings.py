"""Ingest settings: `RSMS_*` environment variables (or `.env`), defaults for localhost."""

from __future__ import annotations

from decimal import Decimal
from ipaddress import IPv4Network, IPv6Network, ip_network
from pathlib import Path

from pydantic import Field, field_validator

from shared.settings import ServiceSettings


class IngestSettings(ServiceSettings):
    ingest_host: str = "127.0.0.1"
    ingest_port: int = 8080
    ingest_workers: int = Field(1, description="Server processes; they share limits in Redis.")
    accounts_file: Path = Path("var/accounts.toml")
    accounts_reload_seconds: float = Field(1.0, description="How often the file is checked.")

    # Defaults for every project; a project's [limits] in the accounts file overrides them.
    requests_per_minute: int = 100
    tag_requests_per_minute: int = 50
    concurrent_requests: int = 10
    concurrency_slot_seconds: int = Field(
        30, description="A slot a crashed process never released expires after this long."
    )

    max_body_bytes: int = 1_048_576
    publish_timeout_seconds: float = 5.0
    redis_timeout_seconds: float = 2.0
    ledger_query_timeout_seconds: float = 10.0
    idempotency_ttl_seconds: int = 86_400

    currency: str = "NOK"
    default_price_per_segment: Decimal = Decimal("0.67")
    prices_per_segment: dict[str, Decimal] = Field(
        default_factory=dict,
        description='Price per segment by ISO country, e.g. RSMS_PRICES_PER_SEGMENT=\'{"SE": "0.72"}\'.',
    )

    trusted_proxies: list[IPv4Network | IPv6Network] = Field(
        default_factory=list,
        description="Peers whose X-Forwarded-For is believed, e.g. '[\"10.0.0.0/8\"]'.",
    )

    @field_validator("trusted_proxies", mode="before")
    @classmethod
    def _networks(cls, value: object) -> object:
        if isinstance(value, list):
            return [ip_network(str(v), strict=False) for v in value]
        return value
