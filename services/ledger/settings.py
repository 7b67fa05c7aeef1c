"""Ledger settings: `RSMS_*` environment variables (or `.env`), defaults for localhost."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, ValidationInfo, field_validator

from services.ledger.dsn import dsn_hosts
from shared.settings import STOP_SLACK_SECONDS, ServiceSettings

DEFAULT_CLICKHOUSE_DIR = Path("var/clickhouse")


def default_clickhouse_dsn() -> str:
    """Embedded chDB under the working directory, made absolute: chDB compares paths literally."""
    return f"chdb://{DEFAULT_CLICKHOUSE_DIR.resolve()}"


class LedgerSettings(ServiceSettings):
    clickhouse_dsn: str = Field(
        default_factory=default_clickhouse_dsn,
        description=(
            "`chdb:///abs/dir` (embedded) or `http://user:pass@host:8123` (server); on a cluster, "
            "several hosts: `http://user:pass@h1:8123,h2:8123` (the ledger uses any that answers)."
        ),
    )
    clickhouse_cluster: str | None = Field(
        None,
        validate_default=True,
        pattern=r"^[A-Za-z_][A-Za-z0-9_]*$",
        description=(
            "ClickHouse cluster name (`remote_servers`): replicated + Distributed tables, DDL ON CLUSTER. "
            "Unset: one server or chDB."
        ),
    )
    clickhouse_database: str = Field(
        "rsms", pattern=r"^[A-Za-z_][A-Za-z0-9_]*$", description="Database of the ledger's tables (created at start)."
    )

    ledger_batch_rows: int = Field(5_000, ge=1, description="Flush when this many rows wait.")
    ledger_batch_seconds: float = Field(1.0, gt=0, description="Flush at most this long after the first waiting row.")
    ledger_prefetch: int = Field(
        1_000,
        ge=2,
        le=65_535,
        description="Unacked deliveries per queue: a batch holds its messages until written.",
    )
    ledger_retry_initial_seconds: float = Field(0.5, gt=0, description="First wait before retrying a refused insert.")
    ledger_retry_max_seconds: float = Field(30.0, gt=0, description="Longest wait between insert retries.")
    ledger_shutdown_seconds: float = Field(10.0, gt=0, description="Longest final flush on SIGTERM.")
    ledger_queue_poll_seconds: float = Field(5.0, gt=0, description="How often queue depths are read.")
    ledger_sql_max_rows: int = Field(10_000, ge=1, description="Most rows `rsms sql` gets back, whatever it asks for.")
    ledger_sql_max_seconds: float = Field(
        60.0, gt=0, description="Longest an `rsms sql` statement runs, whatever it asks for."
    )
    ledger_status_services: dict[str, str] = Field(
        default_factory=lambda: {"ingest": "http://127.0.0.1:8083", "dispatcher": "http://127.0.0.1:8081"},
        description='Ops URLs whose /health/ready the status page shows, e.g. {"ingest": "http://ingest:8083"}.',
    )
    ledger_status_refresh_seconds: int = Field(10, ge=1, description="The status page reloads itself this often.")
    ledger_http_host: str = Field("127.0.0.1", description="Address of /metrics, /health/* and /status.")
    ledger_http_port: int = Field(8082, description="Port of /metrics, /health/* and the status page (/status).")

    @field_validator("clickhouse_dsn")
    @classmethod
    def _absolute_chdb_path(cls, value: str) -> str:
        # chDB allows one data path per process and compares it literally.
        if value.startswith("chdb://") and not value.startswith("chdb:///"):
            raise ValueError("a chDB DSN needs an absolute path: chdb:///abs/dir")
        dsn_hosts(value)  # a server DSN names its hosts
        return value

    @field_validator("clickhouse_cluster")
    @classmethod
    def _cluster_fits_the_dsn(cls, value: str | None, info: ValidationInfo) -> str | None:
        dsn = info.data.get("clickhouse_dsn")
        if dsn is None:
            return value  # the DSN itself is refused: that is the error to report
        if dsn.startswith("chdb://"):
            if value is not None:
                raise ValueError("a cluster needs a ClickHouse server DSN, not chDB")
        elif len(dsn_hosts(dsn)) > 1 and value is None:
            # Separate servers hold separate data: several hosts only make sense as one cluster.
            raise ValueError("a DSN with several hosts needs RSMS_CLICKHOUSE_CLUSTER")
        return value

    @property
    def ledger_batch_messages(self) -> int:
        """Flush once half the prefetch window waits, so small events never stall on the timer."""
        return max(1, self.ledger_prefetch // 2)

    def stop_seconds(self) -> float:
        # SIGTERM: the last batch is flushed, then FastStream waits for its subscribers
        # (both bounded by `ledger_shutdown_seconds`).
        return 2 * self.ledger_shutdown_seconds + STOP_SLACK_SECONDS
