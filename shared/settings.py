"""Settings every service shares the names of: where RabbitMQ and Redis are, how to log.

Each service has its own settings class (`services/<name>/settings.py`) that extends this
one, so `RSMS_AMQP_URL` means the same thing to all of them. Defaults work on a developer
machine with RabbitMQ and Redis on localhost.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class ServiceSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="RSMS_", env_file=".env", extra="ignore")

    amqp_url: str = Field("amqp://guest:guest@localhost:5672/", description="RabbitMQ.")
    redis_url: str = Field("redis://localhost:6379/0", description="Redis.")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field("INFO", description="Log level.")
    log_format: Literal["json", "console"] = Field(
        "json", description="json: one object a line; console: for people (`rsms up` uses it)."
    )
