"""Ingest's settings that are decisions: how many server processes."""

from __future__ import annotations

import pytest

from services.ingest.settings import IngestSettings, available_cpus, default_workers


@pytest.mark.parametrize(("cpus", "workers"), [(1, 1), (2, 1), (3, 1), (4, 2), (16, 8)])
def test_half_the_cpus_at_least_one(cpus: int, workers: int) -> None:
    assert default_workers(cpus) == workers


def test_unset_workers_follow_the_machine(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RSMS_INGEST_WORKERS", raising=False)
    assert IngestSettings().workers == default_workers(available_cpus())


def test_set_workers_are_taken_as_they_are(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RSMS_INGEST_WORKERS", "3")
    assert IngestSettings().workers == 3


def test_zero_workers_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RSMS_INGEST_WORKERS", "0")
    with pytest.raises(ValueError, match="greater than or equal to 1"):
        IngestSettings()
