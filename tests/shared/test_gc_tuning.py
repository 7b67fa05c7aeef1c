"""`shared.gc_tuning`: what the services ask of Python's garbage collector once started."""

from __future__ import annotations

import gc

import pytest

from shared.gc_tuning import PYTHON_DEFAULT_THRESHOLDS, gc_plan, tune_gc
from shared.settings import ServiceSettings


def test_the_plan_raises_only_the_young_generations_threshold():
    plan = gc_plan(10_000, freeze=True)
    assert plan.thresholds == (10_000, *PYTHON_DEFAULT_THRESHOLDS[1:])
    assert plan.freeze


def test_zero_keeps_pythons_default_threshold():
    assert gc_plan(0, freeze=False).thresholds == PYTHON_DEFAULT_THRESHOLDS


def test_a_negative_threshold_is_refused():
    with pytest.raises(ValueError, match="0 or more"):
        gc_plan(-1, freeze=False)


def test_the_services_freeze_and_collect_the_young_generation_less_often_by_default():
    settings = ServiceSettings()
    assert settings.gc_freeze
    assert settings.gc_gen0_threshold > PYTHON_DEFAULT_THRESHOLDS[0]


def test_tuning_freezes_what_exists_and_sets_the_thresholds():
    before = gc.get_threshold()
    try:
        tune_gc(5_000, freeze=True)
        assert gc.get_threshold() == (5_000, *PYTHON_DEFAULT_THRESHOLDS[1:])
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
