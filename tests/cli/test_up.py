"""`rsms up` says what is missing, and how to start it, before starting anything."""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner

from cli.main import rsms
from cli.up import check_dependencies, ensure_demo_project, listeners, smpp_env
from services.dispatcher.settings import DispatcherSettings
from services.ingest.account_store import AccountStore
from services.ingest.settings import IngestSettings


def test_missing_rabbitmq_and_redis_are_named_with_how_to_start_them(free_port: Callable[[], int]) -> None:
    settings = IngestSettings(
        amqp_url=f"amqp://guest:guest@127.0.0.1:{free_port()}/", redis_url=f"redis://127.0.0.1:{free_port()}/0"
    )
    problems = check_dependencies(settings)
    assert len(problems) == 2
    assert "RabbitMQ does not answer" in problems[0] and "rabbitmq-server -detached" in problems[0]
    assert "Redis does not answer" in problems[1] and "redis-server --daemonize yes" in problems[1]

    ports = (
        "RSMS_INGEST_PORT",
        "RSMS_INGEST_OPS_PORT",
        "RSMS_DISPATCHER_HTTP_PORT",
        "RSMS_LEDGER_HTTP_PORT",
        "RSMS_PROVIDER_SIM_PORT",
        "RSMS_WEBHOOKS_HTTP_PORT",
    )
    env = {"RSMS_AMQP_URL": settings.amqp_url, "RSMS_REDIS_URL": settings.redis_url}
    result = CliRunner(env=env | {name: str(free_port()) for name in ports}).invoke(rsms, ["up"])
    assert result.exit_code == 1
    assert "rabbitmq-server -detached" in result.output


def test_running_services_are_not_reported(amqp_url: str, redis_url: str) -> None:
    assert check_dependencies(IngestSettings(amqp_url=amqp_url, redis_url=redis_url)) == []


def test_demo_project_is_created_once_with_a_working_test_key(tmp_path: Path) -> None:
    path = tmp_path / "accounts.toml"
    key = ensure_demo_project(path)
    assert key is not None and key.startswith("sk_test_")
    caller = AccountStore(path).authenticate(key)
    assert caller is not None and caller.test and caller.project.tags["demo"].active
    assert ensure_demo_project(path) is None  # second run: nothing new, the key is not shown again


# As uvicorn listens (SO_REUSEADDR, which lets no second listener in), and with SO_REUSEPORT,
# which would let a second one share the port silently.
@pytest.mark.parametrize("option", [socket.SO_REUSEADDR, socket.SO_REUSEPORT], ids=["reuseaddr", "reuseport"])
def test_a_taken_port_is_refused_in_one_line_naming_the_setting_and_its_process(
    free_port: Callable[[], int], amqp_url: str, redis_url: str, option: int
) -> None:
    names = ("RSMS_INGEST_PORT", "RSMS_INGEST_OPS_PORT", "RSMS_DISPATCHER_HTTP_PORT", "RSMS_LEDGER_HTTP_PORT")
    ports = {name: free_port() for name in names}
    ports["RSMS_PROVIDER_SIM_PORT"] = free_port()
    ports["RSMS_WEBHOOKS_HTTP_PORT"] = free_port()
    env = {name: str(port) for name, port in ports.items()} | {"RSMS_AMQP_URL": amqp_url, "RSMS_REDIS_URL": redis_url}
    with socket.socket() as holder:
        holder.setsockopt(socket.SOL_SOCKET, option, 1)
        holder.bind(("127.0.0.1", ports["RSMS_INGEST_PORT"]))
        holder.listen()
        result = CliRunner(env=env).invoke(rsms, ["up"])
    assert result.exit_code == 2, result.output
    [line] = result.output.strip().splitlines()
    assert f"port {ports['RSMS_INGEST_PORT']} (RSMS_INGEST_PORT, for ingest) is already in use" in line
    assert f"by pid {os.getpid()} (" in line


def test_provider_smpp_listens_on_the_dispatchers_smpp_port_and_binds_them_to_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("RSMS_SMPP_PORT", "2999")
    monkeypatch.setenv("RSMS_SMPP_SYSTEM_ID", "acme")
    assert "RSMS_SMPP_PORT" not in {listener.setting for listener in listeners(1)}
    (face,) = [listener for listener in listeners(1, "smpp") if listener.setting == "RSMS_SMPP_PORT"]
    assert face.port == 2999
    assert smpp_env(DispatcherSettings()) == {
        "RSMS_PROVIDER_KIND": "smpp",
        "RSMS_SMPP_HOST": "127.0.0.1",
        "RSMS_PROVIDER_SIM_SMPP_PORT": "2999",
        "RSMS_PROVIDER_SIM_SMPP_SYSTEM_ID": "acme",
    }
