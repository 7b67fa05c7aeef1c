"""Settings every service shares the names of: where RabbitMQ and Redis are, how to log.

Each service has its own settings class (`services/<name>/settings.py`) that extends this
one, so `RSMS_AMQP_URL` means the same thing to all of them. Defaults work on a developer
machine with RabbitMQ and Redis on localhost.

Building any of them checks the environment once per process, for every service and
command alike:

- a value that does not parse raises `InvalidSetting`, whose message is one line per bad
  variable (`RSMS_INGEST_PORT='eighty': expected a valid integer …`); the `rsms` entry point
  prints it and exits with code 2 instead of a traceback;
- an `RSMS_*` variable no service reads (in the environment or `.env`) is warned about on
  stderr with the closest valid name. "No service": every service's class is consulted
  (`SETTINGS_CLASSES`), so the dispatcher's `RSMS_PROVIDER_URL` is not unknown to ingest.
"""

from __future__ import annotations

import difflib
import json
import os
import re
import sys
from collections.abc import Iterable, Mapping
from functools import cache
from importlib import import_module
from pathlib import Path
from typing import Any, Literal

from dotenv import dotenv_values
from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from pydantic_settings import SettingsError as _SourceError

from shared.log import without_passwords
from shared.redis_connection import Durability, parse_redis_url

ENV_PREFIX = "RSMS_"
ENV_FILE = ".env"

SETTINGS_CLASSES: tuple[tuple[str, str, str], ...] = (
    ("ingest", "services.ingest.settings", "IngestSettings"),
    ("dispatcher", "services.dispatcher.settings", "DispatcherSettings"),
    ("ledger", "services.ledger.settings", "LedgerSettings"),
    ("provider-sim", "services.provider_sim.settings", "ProviderSimSettings"),
    ("webhooks", "services.webhooks.settings", "WebhooksSettings"),
)
"""(service, module, class) of every service's settings: the catalogue `rsms settings`
prints and the unknown-variable check compares against. Named, not imported, so a
service process loads the other classes only to learn their variable names."""

DEFAULT_STOP_SECONDS = 10.0
"""A service without a shutdown wait of its own stops within this (Docker's default too)."""
STOP_SLACK_SECONDS = 5.0
"""Added to a service's own shutdown waits: closing connections and flushing logs after them."""

NOT_SETTINGS_PREFIXES = ("RSMS_TEST_", "RSMS_BENCH_")
"""The test suite's and the benchmarks' own variables: not service settings."""


class InvalidSetting(ValueError):
    """A setting's value does not parse; `str()` is one line per bad variable."""


class ServiceSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, env_file=ENV_FILE, extra="ignore")

    amqp_url: str = Field(
        "amqp://guest:guest@localhost:5672/",
        description="RabbitMQ: one URL, or the nodes of one cluster comma-separated (README).",
    )
    redis_url: str = Field(
        "redis://localhost:6379/0",
        description="Redis: redis://host:port/db, redis+sentinel://host:port[,host:port…]/service[/db] "
        "or redis+cluster://host:port[,host:port…] (README: Redis with Sentinel or Cluster).",
    )
    redis_wait_replicas: int = Field(
        0,
        ge=0,
        description="Replicas that must confirm an Idempotency-Key claim or a send marker (WAIT) before "
        "it counts; 0: the primary's word is enough (one Redis, no replica).",
    )
    redis_wait_timeout_ms: int = Field(
        500, ge=1, description="How long such a write waits for its replicas before it counts as not stored."
    )

    @field_validator("redis_url")
    @classmethod
    def _redis_url_parses(cls, url: str) -> str:
        parse_redis_url(url)  # its ValueError says what is wrong, once, at start
        return url

    def redis_durability(self) -> Durability:
        return Durability(self.redis_wait_replicas, self.redis_wait_timeout_ms)

    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field("INFO", description="Log level.")
    log_format: Literal["json", "console"] = Field(
        "json", description="json: one object a line; console: for people (`rsms up` uses it)."
    )
    gc_freeze: bool = Field(
        True,
        description="Freeze what exists once the service has started, so no garbage collection walks it "
        "again (shared/gc_tuning.py: full collections stopped each service for 60-390 ms).",
    )
    gc_gen0_threshold: int = Field(
        10_000,
        ge=0,
        description="Allocations between young garbage collections (CPython's default 700; 0 keeps it): "
        "a request's objects die before they are collected and promoted.",
    )

    @field_validator("amqp_url")
    @classmethod
    def _amqp_urls(cls, value: str) -> str:
        from shared.rabbitmq import parse_amqp_urls  # FastStream and aio-pika: only when read

        parse_amqp_urls(value)
        return value

    def stop_seconds(self) -> float:
        """The longest this service may take from SIGTERM to its exit, with these settings:
        how long whatever stops it must wait before SIGKILL (`rsms up`, compose's
        `stop_grace_period`, Kubernetes' `terminationGracePeriodSeconds`). Killed sooner, a
        dispatcher's submits in flight end with an unknown outcome and are held for an
        operator, and a batch the ledger or the webhook sender had not finished is done
        again on its redelivery. A service with a shutdown wait of its own says so here."""
        return DEFAULT_STOP_SECONDS

    def __init__(self, **values: Any) -> None:
        warn_about_unknown_variables()
        try:
            super().__init__(**values)
        except ValidationError as error:
            raise InvalidSetting(describe_validation_error(type(self), error)) from None
        except _SourceError as error:
            raise InvalidSetting(describe_source_error(type(self), error)) from None


def settings_classes() -> dict[str, type[ServiceSettings]]:
    """Every service's settings class by service name (`SETTINGS_CLASSES`), imported now."""
    return {service: getattr(import_module(module), name) for service, module, name in SETTINGS_CLASSES}


# --- one line per bad value -----------------------------------------------------------


def variable_name(cls: type[BaseSettings], field: str) -> str:
    return (str(cls.model_config.get("env_prefix", "")) + field).upper()


def describe_validation_error(cls: type[BaseSettings], error: ValidationError) -> str:
    lines = []
    for problem in error.errors(include_url=False):
        field = str(problem["loc"][0]) if problem["loc"] else "?"
        message = problem["msg"]
        # "Input should be a valid integer" → "expected a valid integer"; a validator's own
        # "Value error, a chDB DSN needs …" is said as it is.
        if message.startswith("Value error, "):
            message = message.removeprefix("Value error, ")
        else:
            message = "expected " + re.sub(r"^Input should be\s*", "", message)
        variable = variable_name(cls, field)
        lines.append(f"{variable}={_shown(problem.get('input'), variable)}: {without_passwords(message)}")
    return "\n".join(lines)


def describe_source_error(cls: type[BaseSettings], error: _SourceError) -> str:
    """pydantic-settings parses JSON-typed values (lists, dicts, tuples) before validation
    and names only the field when that fails."""
    match = re.search(r'field "([^"]+)"', str(error))
    if match is None:
        return f"unreadable setting: {error}"
    field = match.group(1)
    variable = variable_name(cls, field)
    value = os.environ.get(variable, _env_file().get(variable))
    example = cls.model_fields[field].get_default(call_default_factory=True)
    return f"{variable}={_shown(value, variable)}: expected JSON like {json.dumps(example, default=str)}"


# Settings whose whole value is a secret: an error names the variable, never the value.
_SECRET_NAME = re.compile(r"(TOKEN|PASSWORD|SECRET|_KEY)$")


def _shown(value: object, variable: str) -> str:
    """The bad value as an operator reads it in a start-up error (a log line): secrets and
    URL passwords masked, since such lines end up in log stores."""
    if _SECRET_NAME.search(variable):
        return "'***'"
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    text = without_passwords(text)
    return repr(text[:80] + ("…" if len(text) > 80 else ""))


# --- unknown variables ----------------------------------------------------------------


@cache
def known_variables() -> frozenset[str]:
    """Every variable some service reads."""
    names: set[str] = set()
    for cls in settings_classes().values():
        names.update(variable_name(cls, field) for field in cls.model_fields)
    return frozenset(names)


def unknown_variable_warnings(names: Iterable[str], known: Iterable[str]) -> list[str]:
    """One warning per `RSMS_*` name no service reads, with the closest valid name."""
    known = sorted(known)
    warnings = []
    for name in sorted(set(names)):
        upper = name.upper()
        if not upper.startswith(ENV_PREFIX) or upper in known or upper.startswith(NOT_SETTINGS_PREFIXES):
            continue
        close = difflib.get_close_matches(upper, known, n=1, cutoff=0.6)
        hint = f"did you mean {close[0]}? " if close else ""
        warnings.append(f"warning: {name} is not a setting of any RSMS service; {hint}it is ignored")
    return warnings


CHECKED_MARKER = "_RSMS_ENVIRONMENT_CHECKED"
"""Set once the environment was checked: commands build settings more than once, and the
processes `rsms up` starts inherit the environment its own check already covered."""


def warn_about_unknown_variables() -> None:
    """On stderr, once per process tree; building any settings class calls it."""
    if os.environ.get(CHECKED_MARKER):
        return
    os.environ[CHECKED_MARKER] = "1"
    names = [*os.environ, *_env_file()]
    for line in unknown_variable_warnings(names, known_variables()):
        print(line, file=sys.stderr)


def _env_file() -> Mapping[str, str | None]:
    return dotenv_values(ENV_FILE) if Path(ENV_FILE).is_file() else {}
