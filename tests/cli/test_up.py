"""`rsms up` says what is missing, and how to start it, before starting anything."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from click.testing import CliRunner

from cli.main import rsms
from cli.up import check_dependencies, ensure_demo_project
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

    result = CliRunner(env={"RSMS_AMQP_URL": settings.amqp_url, "RSMS_REDIS_URL": settings.redis_url}).invoke(
        rsms, ["up"]
    )
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
