"""Settings errors and unknown variables: what a person sees when the environment is wrong."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from shared.settings import CHECKED_MARKER, known_variables, unknown_variable_warnings

PROJECT_ROOT = Path(__file__).resolve().parents[2]


def run_rsms(args: list[str], tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("RSMS_", CHECKED_MARKER))}
    clean.update(env)
    return subprocess.run(
        [sys.executable, "-m", "cli", *args],
        cwd=tmp_path,  # no .env of the developer's
        env={**clean, "PYTHONPATH": str(PROJECT_ROOT)},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_every_service_variable_is_known_to_every_service():
    known = known_variables()
    # One service's variables are not "unknown" to another: all classes are consulted.
    assert {"RSMS_INGEST_PORT", "RSMS_PROVIDER_URL", "RSMS_CLICKHOUSE_DSN", "RSMS_PROVIDER_SIM_PORT"} <= known
    assert unknown_variable_warnings(["RSMS_PROVIDER_URL", "RSMS_LEDGER_BATCH_ROWS", "HOME"], known) == []


def test_a_misspelt_variable_is_named_with_the_closest_valid_name():
    names = ["RSMS_INGST_PORT", "RSMS_DISPATCHER_MAX_ATTEMPT", "RSMS_ZZZ"]
    warnings = unknown_variable_warnings(names, known_variables())
    assert warnings == [
        "warning: RSMS_DISPATCHER_MAX_ATTEMPT is not a setting of any RSMS service; "
        "did you mean RSMS_DISPATCHER_MAX_ATTEMPTS? it is ignored",
        "warning: RSMS_INGST_PORT is not a setting of any RSMS service; did you mean RSMS_INGEST_PORT? it is ignored",
        "warning: RSMS_ZZZ is not a setting of any RSMS service; it is ignored",
    ]


def test_test_suite_and_benchmark_variables_are_not_settings():
    assert unknown_variable_warnings(["RSMS_TEST_REDIS_URL", "RSMS_BENCH_KEY"], known_variables()) == []


def test_unknown_variables_are_warned_about_at_start_also_from_dotenv(tmp_path):
    (tmp_path / ".env").write_text("RSMS_LEDGR_BATCH_ROWS=10\n")
    result = run_rsms(["settings", "--json"], tmp_path, RSMS_INGEST_PORTT="8080", RSMS_PROVIDER_URL="http://x")
    assert result.returncode == 0, result.stderr
    assert result.stderr.splitlines() == [
        "warning: RSMS_INGEST_PORTT is not a setting of any RSMS service; did you mean RSMS_INGEST_PORT? it is ignored",
        "warning: RSMS_LEDGR_BATCH_ROWS is not a setting of any RSMS service; "
        "did you mean RSMS_LEDGER_BATCH_ROWS? it is ignored",
    ]


@pytest.mark.parametrize(
    ("args", "variable", "value", "expected"),
    [
        (["ingest"], "RSMS_INGEST_PORT", "eighty", "expected a valid integer"),
        (["dispatcher"], "RSMS_DISPATCHER_RETRY_DELAYS_MS", "1000,5000", "expected JSON like [1000, 5000, 25000"),
        (["ledger"], "RSMS_CLICKHOUSE_DSN", "chdb://relative", "a chDB DSN needs an absolute path"),
        (["provider-sim"], "RSMS_PROVIDER_SIM_LATENCY_MS", "slow", "expected a valid number"),
        (["accounts", "list"], "RSMS_LOG_LEVEL", "loud", "expected 'DEBUG', 'INFO', 'WARNING' or 'ERROR'"),
        (["usage"], "RSMS_LOG_FORMAT", "xml", "expected 'json' or 'console'"),
        (["dlq", "list"], "RSMS_LOG_FORMAT", "xml", "expected 'json' or 'console'"),
        (["blocklist", "list"], "RSMS_LOG_FORMAT", "xml", "expected 'json' or 'console'"),
        (["up"], "RSMS_INGEST_WORKERS", "many", "expected a valid integer"),
    ],
)
def test_a_bad_value_is_one_line_naming_variable_value_and_expectation(tmp_path, args, variable, value, expected):
    result = run_rsms(args, tmp_path, **{variable: value})
    assert result.returncode == 2, (result.stdout, result.stderr)
    [line] = result.stderr.splitlines()
    assert line.startswith(f"rsms: bad setting {variable}={value!r}: {expected}"), line
    assert "Traceback" not in result.stdout + result.stderr


def test_a_bad_value_never_shows_a_password_or_a_secret(tmp_path):
    # Start-up errors end up in log stores: a URL's password and a secret setting are masked.
    result = run_rsms(["ledger"], tmp_path, RSMS_CLICKHOUSE_DSN="http://rsms:hunter2@ch-1:8123,ch-2:8123/rsms")
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert "needs RSMS_CLICKHOUSE_CLUSTER" in result.stderr
    assert "hunter2" not in result.stdout + result.stderr


@pytest.mark.parametrize(
    ("variable", "value", "shown"),
    [
        ("RSMS_AMQP_URL", "amqp://u:p4ss@a:5672/,amqp://u:p4ss@b:5672/", "'amqp://u:***@a:5672/,amqp://u:***@b:5672/'"),
        ("RSMS_PROVIDER_TOKEN", "tok-123", "'***'"),
        ("RSMS_INGEST_PORT", "eighty", "'eighty'"),
    ],
)
def test_shown_values_mask_secrets(variable, value, shown):
    from shared.settings import _shown

    assert _shown(value, variable) == shown
