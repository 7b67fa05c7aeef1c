"""compose.yaml publishes the API only and holds no credential: they come from `.env`."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.stop_periods import check_stop_periods

ROOT = Path(__file__).resolve().parents[1]
REQUIRED = re.compile(r"\$\{([A-Z_][A-Z0-9_]*):\?[^}]+\}")
SECRET_KEY = re.compile(r"PASS|TOKEN|USER|SECRET|KEY")
URL_CREDENTIALS = re.compile(r"://([^/@\s]*)@")


def compose() -> dict[str, Any]:
    return dict(yaml.safe_load((ROOT / "compose.yaml").read_text()))


def example_variables() -> dict[str, str]:
    found = {}
    for line in (ROOT / ".env.example").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, value = line.split("=", 1)
            found[name.strip()] = value.strip()
    return found


def test_only_the_api_port_is_published():
    # Grafana of the opt-in `observability` profile listens on loopback only.
    published = {
        name: service.get("ports", [])
        for name, service in compose()["services"].items()
        if "observability" not in service.get("profiles", [])
    }
    assert {name: ports for name, ports in published.items() if ports} == {"ingest": ["8080:8080"]}
    for name, service in compose()["services"].items():
        if "observability" in service.get("profiles", []):
            assert all(str(port).startswith("127.0.0.1:") for port in service.get("ports", [])), name


def test_no_credential_is_written_in_compose_yaml():
    for name, service in compose()["services"].items():
        for key, value in (service.get("environment") or {}).items():
            value = str(value)
            if SECRET_KEY.search(key):
                assert REQUIRED.fullmatch(value), f"{name}: {key} must come from .env (${{VAR:?...}})"
            for credentials in URL_CREDENTIALS.findall(value):
                assert REQUIRED.sub("", credentials) == ":", f"{name}: {key} has a fixed login in its URL"


def test_every_required_variable_is_in_env_example_without_a_secret_value():
    required = set(REQUIRED.findall((ROOT / "compose.yaml").read_text()))
    example = example_variables()
    assert required and required == set(example)
    assert {name for name, value in example.items() if value} <= {n for n in required if n.endswith("_USER")}


def test_redis_runs_with_an_append_only_file():
    command = compose()["services"]["redis"]["command"]
    assert command[command.index("--appendonly") + 1] == "yes"


@pytest.mark.skipif(
    shutil.which("docker-compose") is None,
    reason="docker-compose is not on PATH (no Docker here; `pip install docker-compose` in a venv of its "
    "own provides it): the checks of the YAML above still ran",
)
def test_docker_compose_accepts_the_file_with_env_and_refuses_it_without(tmp_path: Path):
    env = {k: v for k, v in os.environ.items() if k not in example_variables()}
    project = ["docker-compose", "--project-directory", str(tmp_path), "-f", str(ROOT / "compose.yaml")]
    refused = subprocess.run([*project, "config", "-q"], env=env, capture_output=True, text=True)
    assert refused.returncode != 0 and "cp .env.example .env" in refused.stderr
    values = {name: value or "s3cret" for name, value in example_variables().items()}
    accepted = subprocess.run([*project, "config", "-q"], env={**env, **values}, capture_output=True, text=True)
    assert accepted.returncode == 0, accepted.stderr


def test_each_service_is_given_the_longest_stop_its_settings_allow_before_sigkill():
    check_stop_periods(compose()["services"])
