"""deploy/compose.production.yaml: the clustered deployment (README "Deployment").

Checked without Docker: the file parses; only the proxy publishes a port; no credential is
written in it (they come from deploy/.env); the RabbitMQ nodes share the cookie and the peer
list names them; the sentinels watch the name RSMS_REDIS_URL asks for; the ClickHouse cluster
and macros are the ones the ledger's settings name; every RSMS_* variable a service gets is
one of that service's settings (a renamed setting fails here) and parses; the ingests trust
the proxy's X-Forwarded-For and nobody else's; every service reads the same accounts directory.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
import xml.etree.ElementTree as ET
from ipaddress import ip_address
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import redis
import yaml
from pydantic_settings import BaseSettings

from cli.main import rsms
from services.dispatcher.settings import DispatcherSettings
from services.ingest.client_ip import client_ip
from services.ingest.settings import IngestSettings
from services.ledger.settings import LedgerSettings
from services.webhooks.settings import WebhooksSettings
from shared.settings import variable_name
from tests.support.stop_periods import check_stop_periods

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
COMPOSE = DEPLOY / "compose.production.yaml"
REQUIRED = re.compile(r"\$\{([A-Z_][A-Z0-9_]*):\?[^}]+\}")
SECRET_KEY = re.compile(r"PASS|TOKEN|USER|SECRET|KEY|COOKIE")
URL_CREDENTIALS = re.compile(r"://([^/@\s,]*)@")

SETTINGS: dict[str, type[BaseSettings]] = {
    "ingest": IngestSettings,
    "dispatcher": DispatcherSettings,
    "ledger": LedgerSettings,
    "webhooks": WebhooksSettings,
    "admin": IngestSettings,  # `rsms accounts` reads RSMS_ACCOUNTS_FILE through it
}


def compose() -> dict[str, Any]:
    return dict(yaml.safe_load(COMPOSE.read_text()))


def services() -> dict[str, dict[str, Any]]:
    return dict(compose()["services"])


def env(service: str) -> dict[str, str]:
    return {k: str(v) for k, v in (services()[service].get("environment") or {}).items()}


def xml_config(path: Path) -> ET.Element:
    return ET.parse(path).getroot()  # noqa: S314 -- this repository's own config files


def example_variables() -> dict[str, str]:
    found = {}
    for line in (DEPLOY / ".env.example").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, value = line.split("=", 1)
            found[name.strip()] = value.strip()
    return found


def with_secrets(value: str) -> str:
    """`value` as compose makes it once deploy/.env gives every variable a value."""
    return REQUIRED.sub(lambda m: "s3cret" if not m.group(1).endswith("_USER") else "rsms", value)


def rsms_services() -> dict[str, dict[str, Any]]:
    return {name: s for name, s in services().items() if s.get("image") == "rsms-gateway:latest"}


def test_the_file_holds_every_part_of_the_topology() -> None:
    assert set(services()) == {
        *(f"rabbitmq-{n}" for n in (1, 2, 3)),
        "redis-1",
        "redis-2",
        *(f"sentinel-{n}" for n in (1, 2, 3)),
        *(f"keeper-{n}" for n in (1, 2, 3)),
        "clickhouse-1",
        "clickhouse-2",
        "proxy",
        "ingest",
        "dispatcher",
        "ledger",
        "webhooks",
        "admin",
    }
    # Several of each, so losing one container loses no capacity to serve at all.
    for name in ("ingest", "dispatcher", "ledger", "webhooks"):
        assert services()[name]["deploy"]["replicas"] >= 2, name


def test_only_the_proxy_publishes_a_port_and_ingest_is_on_its_network() -> None:
    published = {name: s["ports"] for name, s in services().items() if s.get("ports")}
    assert published == {"proxy": ["8080:8080"]}
    assert set(services()["proxy"]["networks"]) == {"edge"}
    assert "edge" in services()["ingest"]["networks"]
    assert not any("edge" in s.get("networks", []) for n, s in services().items() if n not in ("proxy", "ingest"))
    haproxy = (DEPLOY / "haproxy" / "haproxy.cfg").read_text()
    assert "option forwardfor" in haproxy
    assert re.search(r"server-template ingest \d+ ingest:8080", haproxy)


def test_ingest_believes_the_proxy_alone_about_the_client_address(monkeypatch: pytest.MonkeyPatch) -> None:
    proxy = ip_address(services()["proxy"]["networks"]["edge"]["ipv4_address"])
    monkeypatch.setenv("RSMS_TRUSTED_PROXIES", env("ingest")["RSMS_TRUSTED_PROXIES"])
    trusted = IngestSettings().trusted_proxies
    assert [proxy in network for network in trusted] == [True]
    assert [network.num_addresses for network in trusted] == [1]
    # What HAProxy sends: the client's own X-Forwarded-For line, then the line it appends.
    assert str(client_ip(str(proxy), ["198.51.100.7"], trusted)) == "198.51.100.7"
    assert str(client_ip(str(proxy), ["10.89.0.2, 1.2.3.4", "198.51.100.7"], trusted)) == "198.51.100.7"
    # Another container on the network is not the proxy: its header is not believed.
    assert str(client_ip("10.89.0.9", ["198.51.100.7"], trusted)) == "10.89.0.9"


def test_no_credential_is_written_in_the_file() -> None:
    for name, service in services().items():
        for key, value in (service.get("environment") or {}).items():
            value = str(value)
            if SECRET_KEY.search(key):
                assert REQUIRED.fullmatch(value), f"{name}: {key} must come from deploy/.env (${{VAR:?...}})"
            for credentials in URL_CREDENTIALS.findall(value):
                assert REQUIRED.sub("", credentials) == ":", f"{name}: {key} has a fixed login in its URL"
    for config in (DEPLOY / "clickhouse").glob("*.xml"):
        for element in xml_config(config).iter():
            if element.tag in ("password", "user") and element.text and element.text.strip():
                assert element.tag == "user" and element.text == "interserver", f"{config.name}: {element.tag}"


def test_every_required_variable_is_in_the_env_example_without_a_secret_value() -> None:
    required = set(REQUIRED.findall(COMPOSE.read_text()))
    example = example_variables()
    assert required and required == set(example)
    assert {name for name, value in example.items() if value} <= {n for n in required if n.endswith("_USER")}


def test_the_rabbitmq_nodes_share_the_cookie_and_the_peer_list_names_each() -> None:
    nodes = {name: s for name, s in services().items() if name.startswith("rabbitmq-")}
    assert len(nodes) == 3
    assert {s["image"] for s in nodes.values()} == {"rabbitmq:4.0-management"}
    cookies = {s["environment"]["ERLANG_COOKIE"] for s in nodes.values()}
    assert len(cookies) == 1 and REQUIRED.fullmatch(cookies.pop())
    conf = (DEPLOY / "rabbitmq" / "cluster.conf").read_text()
    assert "cluster_formation.peer_discovery_backend = classic_config" in conf
    peers = set(re.findall(r"classic_config\.nodes\.\d+ = rabbit@(\S+)", conf))
    assert peers == {s["hostname"] for s in nodes.values()} == set(nodes)
    for name, node in nodes.items():
        assert any(v.startswith("./rabbitmq/cluster.conf:/etc/rabbitmq/conf.d/") for v in node["volumes"]), name
        assert any(v.endswith(":/var/lib/rabbitmq") for v in node["volumes"]), name  # its own data volume
    # Every service may connect to any of the three.
    for name in rsms_services():
        urls = with_secrets(env(name)["RSMS_AMQP_URL"]).split(",")
        assert {urlsplit(u).hostname for u in urls} == set(nodes), name
        assert {urlsplit(u).port for u in urls} == {5672}


def test_the_sentinels_watch_the_name_and_primary_the_services_ask_for() -> None:
    url = urlsplit(env("ingest")["RSMS_REDIS_URL"])
    assert url.scheme == "redis+sentinel"
    sentinels = {host.split(":")[0] for host in url.netloc.split(",")}
    assert sentinels == {name for name in services() if name.startswith("sentinel-")} and len(sentinels) == 3
    conf = (DEPLOY / "redis" / "sentinel.conf").read_text()
    monitor = re.search(r"^sentinel monitor (\S+) (\S+) (\d+) (\d+)$", conf, re.M)
    assert monitor is not None
    assert (monitor.group(1), monitor.group(2), monitor.group(4)) == (url.path.strip("/"), "redis-1", "2")
    primary, replica = services()["redis-1"]["command"], services()["redis-2"]["command"]
    for command in (primary, replica):
        assert command[command.index("--appendonly") + 1] == "yes"  # README "Redis must persist"
    assert replica[replica.index("--replicaof") + 1 :] == ["redis-1", "6379"]
    assert {env(n)["RSMS_REDIS_URL"] for n in rsms_services()} == {env("ingest")["RSMS_REDIS_URL"]}


def test_the_clickhouse_cluster_and_macros_are_the_ones_the_ledger_names() -> None:
    ledger = env("ledger")
    cluster_name = ledger["RSMS_CLICKHOUSE_CLUSTER"]
    servers = {name: s for name, s in services().items() if name.startswith("clickhouse-")}
    dsn = urlsplit(with_secrets(ledger["RSMS_CLICKHOUSE_DSN"]))
    dsn_hosts = {hostport.split(":")[0] for hostport in dsn.netloc.split("@")[1].split(",")}
    assert dsn_hosts == set(servers) and len(servers) == 2
    assert dsn.path.strip("/") == ledger["RSMS_CLICKHOUSE_DATABASE"]

    cluster = xml_config(DEPLOY / "clickhouse" / "cluster.xml")
    [shard] = cluster.findall(f"remote_servers/{cluster_name}/shard")
    assert shard.findtext("internal_replication") == "true"
    assert {r.findtext("host") for r in shard.findall("replica")} == set(servers)
    keepers = {name: s for name, s in services().items() if name.startswith("keeper-")}
    assert {n.findtext("host") for n in cluster.findall("zookeeper/node")} == set(keepers) and len(keepers) == 3

    macros = xml_config(DEPLOY / "clickhouse" / "macros.xml").find("macros")
    assert macros is not None and macros.findtext("shard")
    replica_variable = macros.find("replica").get("from_env")  # type: ignore[union-attr]
    replicas = [s["environment"][replica_variable] for s in servers.values()]
    assert sorted(replicas) == sorted(s["hostname"] for s in servers.values())  # one each, all different
    for name, server in servers.items():
        mounted = {v.split(":")[0] for v in server["volumes"]}
        assert {"./clickhouse/cluster.xml", "./clickhouse/macros.xml"} <= mounted, name

    keeper = xml_config(DEPLOY / "clickhouse" / "keeper.xml")
    raft = {s.findtext("id"): s.findtext("hostname") for s in keeper.findall("keeper_server/raft_configuration/server")}
    assert raft == {s["environment"]["KEEPER_SERVER_ID"]: s["hostname"] for s in keepers.values()}


def test_every_service_runs_an_rsms_command_built_from_this_repository() -> None:
    for name, service in rsms_services().items():
        assert service["build"] == "..", name
        command = service["command"]
        if name == "admin":
            assert service["profiles"] == ["admin"] and command == ["--help"]
            continue
        assert command == [name] and name in rsms.commands, name


def test_every_rsms_variable_is_a_setting_of_the_service_that_gets_it_and_parses(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name, service in rsms_services().items():
        settings_class = SETTINGS[service["command"][0] if name != "admin" else "admin"]
        known = {variable_name(settings_class, field) for field in settings_class.model_fields}
        variables = env(name)
        unknown = set(variables) - known
        assert not unknown, f"{name}: {sorted(unknown)} are not settings of {settings_class.__name__}"
        with monkeypatch.context() as patched:
            for key in [k for k in os.environ if k.startswith("RSMS_")]:
                patched.delenv(key)
            for key, value in variables.items():
                patched.setenv(key, with_secrets(value))
            settings_class()  # every value parses (raises InvalidSetting otherwise)


def test_every_service_reads_the_one_accounts_directory_and_only_admin_writes_it() -> None:
    readers = {name: s for name, s in rsms_services().items() if "RSMS_ACCOUNTS_FILE" in env(name)}
    assert set(readers) == {"ingest", "dispatcher", "webhooks", "admin"}
    for name, service in readers.items():
        directory = str(Path(env(name)["RSMS_ACCOUNTS_FILE"]).parent)
        # The directory, not the file: `rsms accounts` replaces the file (write, rename),
        # and a file mount would keep showing the old one.
        [mount] = [v for v in service["volumes"] if v.split(":")[1] == directory]
        assert mount.split(":")[0] == "./accounts", name
        assert mount.endswith(":ro") == (name != "admin"), name


def test_the_ledger_status_page_watches_services_of_this_file() -> None:
    watched = json.loads(env("ledger")["RSMS_LEDGER_STATUS_SERVICES"])
    assert {urlsplit(url).hostname for url in watched.values()} <= set(services())


@pytest.mark.skipif(
    shutil.which("docker-compose") is None,
    reason="docker-compose is not on PATH (no Docker here): the checks of the YAML above still ran",
)
def test_docker_compose_accepts_the_file_with_env_and_refuses_it_without(tmp_path: Path) -> None:
    environ = {k: v for k, v in os.environ.items() if k not in example_variables()}
    project = ["docker-compose", "--project-directory", str(tmp_path), "-f", str(COMPOSE)]
    refused = subprocess.run([*project, "config", "-q"], env=environ, capture_output=True, text=True)
    assert refused.returncode != 0 and "cp deploy/.env.example deploy/.env" in refused.stderr
    values = {name: value or "s3cret" for name, value in example_variables().items()}
    accepted = subprocess.run([*project, "config", "-q"], env={**environ, **values}, capture_output=True, text=True)
    assert accepted.returncode == 0, accepted.stderr


@pytest.mark.skipif(shutil.which("redis-server") is None, reason="redis-server is not on PATH")
def test_redis_accepts_the_sentinel_config_and_watches_the_primary_it_names(tmp_path: Path) -> None:
    """The file as Redis 7 reads it (`redis-server … --sentinel`), with the compose name of the
    primary swapped for a redis-server of this test's own."""
    from tests.support.redis_server import RedisServer

    def free_port() -> int:
        import socket

        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            return int(sock.getsockname()[1])

    primary = RedisServer(free_port(), tmp_path / "primary", appendonly=False).start()
    sentinel_port = free_port()
    conf = (DEPLOY / "redis" / "sentinel.conf").read_text()
    conf = conf.replace("redis-1 6379", f"127.0.0.1 {primary.port}").replace("port 26379", f"port {sentinel_port}")
    conf = conf.replace("dir /data", f"dir {tmp_path}") + "bind 127.0.0.1\n"
    (tmp_path / "sentinel.conf").write_text(conf)
    sentinel = subprocess.Popen(
        [str(shutil.which("redis-server")), str(tmp_path / "sentinel.conf"), "--sentinel"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    client = redis.Redis(port=sentinel_port, decode_responses=True)
    try:
        deadline = time.monotonic() + 30
        while True:
            assert sentinel.poll() is None, "redis-server refused the sentinel config"
            try:
                watched = client.execute_command("SENTINEL", "MASTER", "rsms")
                break
            except redis.ConnectionError:
                assert time.monotonic() < deadline, "the sentinel never answered"
                time.sleep(0.1)
        fields = dict(zip(watched[::2], watched[1::2], strict=True)) if isinstance(watched, list) else watched
        assert (fields["ip"], str(fields["port"]), str(fields["quorum"])) == ("127.0.0.1", str(primary.port), "2")
        assert str(fields["down-after-milliseconds"]) == "5000"
    finally:
        client.close()
        sentinel.terminate()
        sentinel.wait(10)
        primary.stop()


def test_each_service_is_given_the_longest_stop_its_settings_allow_before_sigkill() -> None:
    check_stop_periods(services())
