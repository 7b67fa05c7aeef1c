"""deploy/observability/: the alert rules pass promtool (checked and unit-tested), every
metric the rules and the dashboard use is one the services export, and compose wires
Prometheus and Grafana to those files in the `observability` profile."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import yaml
from prometheus_client import CollectorRegistry

from services.dispatcher.metrics import DispatcherMetrics
from services.ingest.metrics import IngestMetrics
from services.ledger.metrics import LedgerMetrics
from tests.support.tools import required_tool

ROOT = Path(__file__).resolve().parents[1]
OBSERVABILITY = ROOT / "deploy" / "observability"
DASHBOARD = OBSERVABILITY / "grafana" / "dashboards" / "rsms-gateway.json"
METRIC_NAME = re.compile(r"\brsms_[a-z_]+\b")


def promtool() -> str:
    return required_tool("promtool", "apt-get install --no-install-recommends prometheus")


def run_promtool(*args: str) -> str:
    done = subprocess.run([promtool(), *args], cwd=OBSERVABILITY, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def exported_series() -> set[str]:
    """Every series name the services' registries expose (counters with _total, histograms
    with _bucket/_sum/_count)."""
    names: set[str] = set()
    registries: list[CollectorRegistry] = [IngestMetrics().registry, DispatcherMetrics().registry]
    registries.append(LedgerMetrics().registry)
    for registry in registries:
        for family in registry.collect():
            names.add(family.name)
            if family.type == "counter":
                names.add(family.name + "_total")
            if family.type == "histogram":
                names.update(family.name + suffix for suffix in ("_bucket", "_sum", "_count"))
    return names


def dashboard_expressions() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    found = [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]
    found += [variable["definition"] for variable in dashboard["templating"]["list"]]
    return found


def alert_expressions() -> list[str]:
    rules = yaml.safe_load((OBSERVABILITY / "alerts.yml").read_text())
    return [rule["expr"] for group in rules["groups"] for rule in group["rules"]]


def test_the_alert_rules_and_prometheus_config_pass_promtool() -> None:
    assert "SUCCESS: 10 rules found" in run_promtool("check", "rules", "alerts.yml")
    run_promtool("check", "config", "prometheus.yml")


def test_the_alerts_fire_on_what_they_are_meant_for() -> None:
    assert "SUCCESS" in run_promtool("test", "rules", "alerts_test.yml")


def test_rules_and_dashboard_use_only_metrics_the_services_export() -> None:
    exported = exported_series()
    for expression in [*alert_expressions(), *dashboard_expressions()]:
        used = set(METRIC_NAME.findall(expression))
        assert used or expression.startswith("up{"), expression  # `up`: Prometheus's own
        assert used <= exported, (expression, used - exported)


def test_the_dashboard_breaks_down_by_project_and_covers_the_services() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] == "rsms-gateway"
    assert [v["name"] for v in dashboard["templating"]["list"]] == ["project"]
    text = " ".join(dashboard_expressions())
    for prefix in ("rsms_ingest_", "rsms_dispatcher_", "rsms_ledger_"):
        assert prefix in text
    assert 'project=~"$project"' in text
    # Every panel reads the provisioned data source.
    assert {panel["datasource"]["uid"] for panel in dashboard["panels"]} == {"rsms-prometheus"}
    datasources = yaml.safe_load((OBSERVABILITY / "grafana/provisioning/datasources/prometheus.yml").read_text())
    assert datasources["datasources"][0]["uid"] == "rsms-prometheus"


def test_the_observability_profile_mounts_these_files_and_scrapes_ops_ports_only() -> None:
    services: dict[str, Any] = yaml.safe_load((ROOT / "compose.yaml").read_text())["services"]
    for name in ("prometheus", "grafana"):
        assert services[name]["profiles"] == ["observability"]
        for volume in services[name]["volumes"]:
            source = volume.split(":", 1)[0]
            if source.startswith("./"):
                assert (ROOT / source).exists(), (name, source)
    config = yaml.safe_load((OBSERVABILITY / "prometheus.yml").read_text())
    targets = [t for job in config["scrape_configs"] for c in job.get("static_configs", []) for t in c["targets"]]
    ports = [c["port"] for job in config["scrape_configs"] for c in job.get("dns_sd_configs", [])]
    assert sorted(targets) == ["ingest:8083", "ledger:8082"] and ports == [8081]
    assert services["ingest"]["environment"]["RSMS_INGEST_OPS_HOST"] == "0.0.0.0"  # noqa: S104 -- compose network
