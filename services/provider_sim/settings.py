"""Simulator settings: `RSMS_PROVIDER_SIM_*` environment variables, defaults for localhost.

The defaults match the dispatcher's default provider URL and token, so a developer
machine works out of the box.
"""

from __future__ import annotations

from pydantic import Field

from shared.settings import ServiceSettings


class ProviderSimSettings(ServiceSettings):
    provider_sim_host: str = "127.0.0.1"
    provider_sim_port: int = 8090
    provider_sim_token: str = "sim-token"  # noqa: S105 - the simulator's, not a secret
    provider_sim_latency_ms: float = Field(0.0, description="Added to every send request.")
    provider_sim_timeout_seconds: float = Field(
        30.0, description="How long a request hit by the timeout fault hangs before answering."
    )
