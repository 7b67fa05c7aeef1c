"""Compose's `stop_grace_period` of each RSMS service against the longest stop its settings
allow (`ServiceSettings.stop_seconds`): Docker sends SIGKILL after it, and a dispatcher killed
with submits in flight holds them for an operator."""

from __future__ import annotations

import re
from importlib import import_module
from typing import Any

from shared.settings import SETTINGS_CLASSES, ServiceSettings

_DURATION = re.compile(r"(?:(\d+)m)?(?:(\d+)s)?")
DOCKER_DEFAULT_STOP_SECONDS = 10.0


def seconds(duration: str) -> float:
    """A compose duration as this repository writes them: `75s`, `1m15s`."""
    match = _DURATION.fullmatch(duration)
    assert match is not None and duration, f"not a duration: {duration!r}"
    minutes, secs = match.groups()
    return 60 * int(minutes or 0) + int(secs or 0)


def _default_settings(service: str) -> ServiceSettings | None:
    """The service's settings with every default (whatever this process's environment says),
    or None for a command that is not a service."""
    for name, module, class_name in SETTINGS_CLASSES:
        if name == service:
            settings_class: type[ServiceSettings] = getattr(import_module(module), class_name)
            return settings_class.model_construct()
    return None


def stop_periods(services: dict[str, dict[str, Any]]) -> dict[str, tuple[float, float]]:
    """Each compose service running an RSMS service: name -> (its stop period, the longest
    stop its default settings allow)."""
    periods = {}
    for name, service in services.items():
        settings = _default_settings((service.get("command") or [""])[0])
        if settings is not None:
            period = service.get("stop_grace_period")
            periods[name] = (seconds(period) if period else DOCKER_DEFAULT_STOP_SECONDS, settings.stop_seconds())
    return periods
