"""Dispatcher settings: `RSMS_DISPATCHER_*` / `RSMS_PROVIDER_*` / `RSMS_SMPP_*` environment variables.

The provider defaults point at the simulator's defaults (`rsms provider-sim`), so a
developer machine works out of the box.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from shared.settings import STOP_SLACK_SECONDS, ServiceSettings


class DispatcherSettings(ServiceSettings):
    dispatcher_prefetch: int = Field(64, description="Jobs a dispatcher holds unacknowledged.")
    dispatcher_max_attempts: int = Field(5, ge=1, description="Send attempts per recipient.")
    dispatcher_retry_delays_ms: tuple[int, ...] = Field(
        (1_000, 5_000, 25_000, 120_000, 600_000),
        description="Wait before attempt n+1 is RETRY_DELAYS[n-1]; the last one repeats.",
    )
    dispatcher_marker_ttl_seconds: int = Field(
        7 * 86_400,
        description="How long a per-recipient send marker is kept while its job may still come back "
        "(handed back behind an open circuit, a retry waiting, recipients held for an operator).",
    )
    dispatcher_settled_marker_ttl_seconds: int = Field(
        86_400,
        ge=60,
        description="How long the send markers of a job that is done (acknowledged, nothing left to send) "
        "are kept: it comes back only if its ack was lost with the channel, and then at the next "
        "consume, so this must outlast the longest time no dispatcher consumes.",
    )
    dispatcher_unknown_outcome: Literal["hold", "resend"] = Field(
        "hold",
        description="A recipient that may or may not have been sent (a crash between the send and "
        "its record, markers Redis lost, a provider answer that never came), where the provider "
        "cannot deduplicate a resend (SMPP): hold it in the dead-letter queue for an operator "
        "(at most once), or resend it (at least once). Providers that deduplicate always resend.",
    )
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

    provider_kind: Literal["http", "smpp"] = Field(
        "http", description="Which provider adapter sends live jobs: the HTTP batch API, or an SMSC over SMPP."
    )
    provider_url: str = Field("http://127.0.0.1:8090", description="Base URL of the provider's batch API.")
    provider_token: str = Field("sim-token", description="Bearer token for the provider (default: the simulator's).")
    provider_deduplicates: bool = Field(
        True,
        description="The HTTP provider deduplicates by the gateway's reference (the simulator does), "
        "so a recipient whose outcome is unknown can be resent safely; false: see "
        "RSMS_DISPATCHER_UNKNOWN_OUTCOME.",
    )
    provider_timeout_seconds: float = Field(10.0, description="Timeout of one provider request; then transient.")
    provider_batch_size: int = Field(
        1000,
        ge=1,
        description="Most recipients in one provider request (jobs are merged or split). Over SMPP "
        "at most half the binds' windows: see DispatcherSettings.provider_chunking.",
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

    # SMPP 3.4 (RSMS_PROVIDER_KIND=smpp): see README "Connecting a real SMSC".
    smpp_host: str = Field("127.0.0.1", description="The SMSC's address.")
    smpp_port: int = Field(2775, description="The SMSC's SMPP port.")
    smpp_system_id: str = Field("rsms", max_length=15, description="ESME account (bind system_id).")
    smpp_password: str = Field("rsms", max_length=8, description="ESME password (bind password).")
    smpp_system_type: str = Field("", max_length=12, description="bind system_type, if the SMSC wants one.")
    smpp_bind_mode: Literal["transceiver", "transmitter_receiver"] = Field(
        "transceiver", description="One transceiver per bind, or a transmitter and a receiver per bind."
    )
    smpp_binds: int = Field(1, ge=1, le=64, description="Binds (sessions) each dispatcher keeps open.")
    smpp_window: int = Field(10, ge=1, le=1000, description="submit_sm outstanding per bind.")
    smpp_submit_rate: float = Field(0.0, ge=0, description="Most submit_sm a second per bind; 0: no limit.")
    smpp_enquire_link_seconds: float = Field(30.0, gt=0, description="enquire_link interval on an idle bind.")
    smpp_response_timeout_seconds: float = Field(
        10.0, gt=0, description="A submit_sm unanswered this long has an unknown outcome."
    )
    smpp_tls: bool = Field(False, description="Bind over TLS.")
    smpp_tls_ca_file: str | None = Field(None, description="CA bundle to verify the SMSC's certificate (TLS).")
    smpp_registered_delivery: int = Field(
        1, ge=0, le=255, description="submit_sm registered_delivery: 1 asks for a receipt, 0 for none."
    )
    smpp_concatenation: Literal["udh8", "udh16", "sar"] = Field(
        "udh8", description="Multipart by UDH with an 8- or 16-bit reference, or by SAR TLVs."
    )
    smpp_gsm7_packed: bool = Field(False, description="GSM-7 packed 8 septets in 7 octets (default: one a octet).")
    smpp_status_map: dict[str, Literal["no_credits", "auth_error", "throttled", "invalid", "blocked", "transient"]] = (
        Field(
            default_factory=dict,
            description='Vendor command_status to meaning, e.g. {"0x00000458": "no_credits"}.',
        )
    )
    smpp_throttle_backoff_seconds: float = Field(
        0.5, gt=0, description="A throttled bind pauses this long (doubling, up to 30 s)."
    )
    smpp_throttle_retries: int = Field(8, ge=0, description="Throttled submits of one part retried this often.")
    smpp_reconnect_max_seconds: float = Field(30.0, gt=0, description="Longest wait between bind attempts.")
    smpp_bind_wait_seconds: float = Field(
        5.0, gt=0, description="A send waits this long for a bound session before it is retried later."
    )
    smpp_inbound_reassembly_seconds: float = Field(
        60.0, gt=0, description="Parts of an inbound message wait this long for the rest."
    )
    smpp_unbind_grace_seconds: float = Field(
        10.0, ge=0, description="On shutdown, outstanding submits get this long to be answered."
    )

    receipts_callback_token: str = Field(
        "sim-receipt-token",
        description="Bearer token the HTTP provider must present on the receipt callback (set your own in production).",
    )
    receipts_callback_url: str | None = Field(
        None,
        description="URL the HTTP provider POSTs receipts to; default: /v1/receipts on this dispatcher's HTTP port.",
    )
    receipts_ttl_seconds: int = Field(
        7 * 86_400, ge=60, description="How long a sent part waits for its receipts (then they are unmatched)."
    )
    receipts_match_grace_seconds: float = Field(
        300.0, gt=0, description="How long a receipt with no sent part is matched again before it is kept as unmatched."
    )
    receipts_max_concurrent: int = Field(
        16, ge=1, description="Receipts worked on at once (each takes Redis connections from the jobs' pool)."
    )

    # Inbound SMS (README "Inbound numbers and opt-out"): routed by the accounts file's
    # inbound numbers, the same file ingest reads.
    accounts_file: Path = Field(
        Path("var/accounts.toml"), description="Projects and their inbound numbers (TOML), as ingest reads it."
    )
    accounts_reload_seconds: float = Field(1.0, gt=0, description="How often the accounts file is checked for changes.")
    inbound_opt_out_keywords: list[str] = Field(
        default_factory=list,
        description='Opt-out keywords besides STOP, STOPP and UNSUBSCRIBE, e.g. ["AVMELD", "STOPPA"].',
    )
    inbound_opt_in_keywords: list[str] = Field(
        default_factory=list, description='Opt-in (re-subscribe) keywords besides START, e.g. ["UNSTOP"].'
    )

    def provider_chunking(self) -> tuple[int, int]:
        """Recipients per provider batch, and batches of one job claimed and unanswered at once.

        A job claims each batch of its recipients just before it goes to the provider, so
        after a crash only the batches in flight have an unknown outcome ("p"); with a
        provider that cannot deduplicate (SMPP) those are held for an operator. Over HTTP a
        batch is one request, and one job's batches may fill every request in flight. Over
        SMPP each recipient is its own submit_sm and only the binds' windows can be
        outstanding: so a job has two unanswered batches of half the windows each. Every
        claimed recipient is written at once (none waits, claimed, behind a full window),
        and the next batch is claimed into the half an answered one frees while that one
        is recorded.
        """
        if self.provider_kind != "smpp":
            return self.provider_batch_size, self.provider_max_concurrent_requests
        outstanding = self.smpp_window * self.smpp_binds
        in_flight = 2 if outstanding > 1 else 1
        return min(self.provider_batch_size, outstanding // in_flight), in_flight

    def receipt_callback(self) -> tuple[str, str]:
        url = (
            self.receipts_callback_url or f"http://{self.dispatcher_http_host}:{self.dispatcher_http_port}/v1/receipts"
        )
        return url, self.receipts_callback_token

    def stop_seconds(self) -> float:
        # SIGTERM: the jobs in flight finish (the grace), then FastStream stops its own
        # subscriber (the pending receipts: the same graceful timeout), then the SMSC's
        # outstanding submits get the unbind grace.
        return 2 * self.dispatcher_shutdown_grace_seconds + self.smpp_unbind_grace_seconds + STOP_SLACK_SECONDS
