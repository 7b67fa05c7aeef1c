"""Ingest settings: `RSMS_*` environment variables (or `.env`), defaults for localhost."""

from __future__ import annotations

import os
from decimal import Decimal
from ipaddress import IPv4Network, IPv6Network, ip_network
from pathlib import Path

from pydantic import Field, field_validator

from shared.settings import ServiceSettings


class IngestSettings(ServiceSettings):
    ingest_host: str = Field("127.0.0.1", description="Address the API listens on.")
    ingest_port: int = Field(8080, description="Port of the API, /docs and /health/*.")
    ingest_ops_host: str = Field("127.0.0.1", description="Address of /metrics and /health/* for operators.")
    ingest_ops_port: int = Field(8083, description="Port of /metrics (all workers together) and /health/*.")
    ingest_workers: int | None = Field(
        None,
        ge=1,
        description="Server processes; they share the limits in Redis. Unset: half the CPUs this process may "
        "run on, at least 1.",
    )
    ingest_max_connections: int = Field(
        4096, ge=1, description="Connections each server process holds at once; more wait in the listen backlog."
    )
    ingest_header_timeout_seconds: float = Field(
        5.0, gt=0, le=60, description="A connection that has not sent a request's headers within this long is closed."
    )
    accounts_file: Path = Field(Path("var/accounts.toml"), description="Projects, keys and tags (TOML).")
    accounts_reload_seconds: float = Field(1.0, description="How often the accounts file is checked for changes.")

    # Defaults for every project; a project's [limits] in the accounts file overrides them.
    requests_per_minute: int = Field(100, description="Requests per minute per API key.")
    tag_requests_per_minute: int = Field(50, description="Requests per minute per tag.")
    concurrent_requests: int = Field(10, description="Requests in flight per API key.")
    reads_per_minute: int = Field(
        600, ge=1, description="Status and usage reads per minute per API key; they do not count against sends."
    )
    concurrency_slot_seconds: int = Field(
        30, description="A slot a crashed process never released expires after this long."
    )

    max_body_bytes: int = Field(1_048_576, description="Larger request bodies are refused with 413.")
    max_header_bytes: int = Field(32_768, description="Larger request headers are refused with 431.")
    body_timeout_seconds: float = Field(
        10.0, description="A send body not received this long after its headers is refused with 408."
    )
    publish_timeout_seconds: float = Field(5.0, description="Wait this long for RabbitMQ's confirm.")
    publish_group_max_jobs: int = Field(
        64, ge=1, description="Jobs accepted close together share one broker message and confirm: at most this many."
    )
    publish_group_max_bytes: int = Field(
        1_048_576, ge=1, description="A group leaves once its jobs' JSON reaches this size."
    )
    publish_group_max_wait_ms: float = Field(
        2.0,
        ge=0,
        description="While a publish awaits its confirm, a new group waits this long for more jobs "
        "(an idle gateway never waits: a group then leaves at the next event-loop turn).",
    )
    publish_group_max_in_flight: int = Field(
        1,
        ge=0,
        description="Publishes awaiting their confirm at most: while that many are, a new group waits for "
        "a confirm and leaves then, holding what arrived meanwhile (0: no limit, only the wait above).",
    )
    redis_timeout_seconds: float = Field(2.0, description="Redis connect and command timeout.")
    ledger_query_timeout_seconds: float = Field(10.0, description="Wait this long for the ledger's answer.")
    idempotency_ttl_seconds: int = Field(86_400, description="How long an Idempotency-Key is remembered.")
    accepted_status_ttl_seconds: int = Field(
        3600,
        ge=1,
        description="How long ingest answers an accepted message's status as queued itself while the ledger "
        "has not recorded it.",
    )

    currency: str = Field("NOK", description="Currency of all prices.")
    default_price_per_segment: Decimal = Field(Decimal("0.67"), description="Price per segment, any country.")
    prices_per_segment: dict[str, Decimal] = Field(
        default_factory=dict,
        description='Price per segment by ISO country, e.g. {"SE": "0.72", "US": "0.55"}.',
    )

    trusted_proxies: list[IPv4Network | IPv6Network] = Field(
        default_factory=list,
        description='Proxies whose X-Forwarded-For is believed, e.g. ["10.0.0.0/8"].',
    )

    @property
    def workers(self) -> int:
        """The server's worker processes: as set, else `default_workers` of this machine."""
        return self.ingest_workers if self.ingest_workers is not None else default_workers(available_cpus())

    @field_validator("trusted_proxies", mode="before")
    @classmethod
    def _networks(cls, value: object) -> object:
        if isinstance(value, list):
            return [ip_network(str(v), strict=False) for v in value]
        return value


def default_workers(cpus: int) -> int:
    """Half the CPUs, at least one. Where ingest shares the machine with the pipeline behind
    it (`rsms up`), every accepted message costs the dispatcher, the ledger, RabbitMQ and
    Redis about as much CPU again as ingest, so more workers than half the cores only take
    it from them; and each worker groups only its own requests, so fewer, busier workers
    make bigger groups. On 2 cores, one worker instead of two took `bench.peers` from
    ~2,200 to ~2,950 single-recipient sends a second, at 0.59 instead of 0.85 CPU-ms each
    (bench/README.md). The price: with one worker, a worker that dies leaves the API
    unanswered until the supervisor has started another (it looks every half second, and a
    worker takes about a second to start); two keep one serving meanwhile. A host that runs
    ingest alone, or wants that, sets `RSMS_INGEST_WORKERS`."""
    return max(1, cpus // 2)


def available_cpus() -> int:
    """The CPUs this process may run on (its affinity: a container's cpuset), else all."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1
