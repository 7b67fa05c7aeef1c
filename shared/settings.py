"""Settings every service shares the names of: where RabbitMQ and Redis are, how to log.

Each service has its own settings class (`services/<name>/settings.py`) that extends this
one, so `RSMS_AMQP_URL` means the same thing to all of them. Defaults work on a developer
machine with RabbitMQ and Redis on localhost.
"""

from __future__ import annotations

from typing import Literal

from pydantic_settings import BaseSettings, SettingsConfigDict


class ServiceSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="RSMS_", env_file=".env", extra="ignore")

    amqp_url: str = "amqp://guest:guest@localhost:5672/"
    redis_url: str = "redis://localhost:6379/0"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["json", "console"] = "json"
