"""Simulator settings: `RSMS_PROVIDER_SIM_*` environment variables, defaults for localhost.

The defaults match the dispatcher's default provider URL and token, so a developer
machine works out of the box.
"""

from __future__ import annotations

from pydantic import Field

from shared.settings import ServiceSettings


class ProviderSimSettings(ServiceSettings):
    provider_sim_host: str = Field("127.0.0.1", description="Address the simulator listens on.")
    provider_sim_port: int = Field(8090, description="Port of the simulator's API and /admin/*.")
    provider_sim_token: str = Field("sim-token", description="Bearer token the simulator accepts.")
    provider_sim_latency_ms: float = Field(0.0, description="Added to every send request.")
    provider_sim_timeout_seconds: float = Field(
        30.0, description="How long a request hit by the timeout fault hangs before answering."
    )
    provider_sim_receipt_delay_ms: float = Field(
        300.0, ge=0, description="How long after a send its delivery receipt is POSTed to the callback URL."
    )
    provider_sim_receipt_failure_rate: float = Field(
        0.0, ge=0, le=1, description="Share of receipts reporting the message undelivered (err 001)."
    )
    provider_sim_smpp_port: int | None = Field(
        None, description="Port of the SMPP face (an SMSC for RSMS_PROVIDER_KIND=smpp); unset: no SMPP face."
    )
    provider_sim_smpp_system_id: str = Field(
        "rsms", description="The system_id the SMPP face takes submits from (the dispatcher's RSMS_SMPP_SYSTEM_ID)."
    )
