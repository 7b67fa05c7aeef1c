"""Compose's `stop_grace_period` of each RSMS service against the longest stop its settings
allow (`ServiceSettings.stop_seconds`): Docker sends SIGKILL after it, and a dispatcher killed
with submits in flight holds them for an operator."""

from __future__ import annotations

import re
from typing import Any

from shared.settings import settings_classes

_DURATION = re.compile(r"(?:(\d+)m)?(?:(\d+)s)?")
DOCKER_DEFAULT_STOP_SECONDS = 10.0


def seconds(duration: str) -> float:
    """A compose duration as this repository writes them: `75s`, `1m15s`."""
    match = _DURATION.fullmatch(duration)
    assert match is not None and duration, f"not a duration: {duration!r}"
    minutes, secs = match.groups()
    return 60 * int(minutes or 0) + int(secs or 0)


def stop_periods(services: dict[str, dict[str, Any]]) -> dict[str, tuple[float, float]]:
    """Each compose service running an RSMS service: name -> (its stop period, the longest
    stop its settings allow with every default, whatever this process's environment says)."""
    classes = settings_classes()
    periods = {}
    for name, service in services.items():
        settings_class = classes.get((service.get("command") or [""])[0])
        if settings_class is not None:
            period = service.get("stop_grace_period")
            longest = settings_class.model_construct().stop_seconds()
            periods[name] = (seconds(period) if period else DOCKER_DEFAULT_STOP_SECONDS, longest)
    return periods


def check_stop_periods(services: dict[str, dict[str, Any]]) -> None:
    """Every RSMS service is there, and none is killed before its longest stop."""
    periods = stop_periods(services)
    assert {"ingest", "dispatcher", "ledger", "webhooks"} <= set(periods)
    assert {name: p for name, p in periods.items() if p[0] < p[1]} == {}, "(stop_grace_period, stop_seconds)"
