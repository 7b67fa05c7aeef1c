"""The README's examples work as written.

- Every block marked `<!-- readme-example -->` (curl, `rsms send`, Python) in the README and
  the SDK's README runs against the demo project of a fresh `rsms up`, with the demo key in
  `SMS_API_KEY` as the README says.
  The one change made to them: the gateway's address, as the test's gateway has a port of
  its own (the README's is 8080).
- Every `rsms …` command the README shows parses: its command, options and arguments exist.
- Every default in the README's settings table is accepted when pasted as the variable.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
import pytest

from cli.main import rsms
from shared.settings import settings_classes
from tests.support.demo_gateway import DemoGateway, demo_gateway

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
README_URL = "http://127.0.0.1:8080"
EXAMPLE_FILES = ("README.md", "clients/python/README.md")


def examples(name: str) -> list[Any]:
    """(language, code) of each marked block of file `name`, named by its line there."""
    text = (ROOT / name).read_text()
    return [
        pytest.param(found[1], found[2], id=f"{name}:{text.count(chr(10), 0, found.start()) + 2}")
        for found in re.finditer(r"^<!-- readme-example -->\n```(sh|python)\n(.*?)^```", text, re.S | re.M)
    ]


EXAMPLES = [example for name in EXAMPLE_FILES for example in examples(name)]
# Placeholders the README writes in commands, and a value of the kind they stand for.
PLACEHOLDERS = {"<messageId>": "550e8400-e29b-41d4-a716-446655440000"}


@pytest.fixture(scope="module")
def gateway(rabbit_admin: object, tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoGateway]:
    with demo_gateway(rabbit_admin, tmp_path_factory.mktemp("readme-gateway")) as running:
        yield running


def test_the_readmes_mark_their_examples() -> None:
    languages = [example.values[0] for example in EXAMPLES]
    assert languages.count("sh") >= 3 and languages.count("python") >= 8, languages


@pytest.mark.slow
@pytest.mark.parametrize(("language", "code"), EXAMPLES)
def test_a_readme_example_runs_against_the_demo_project(
    gateway: DemoGateway, language: str, code: str, tmp_path: Path
) -> None:
    code = code.replace(README_URL, gateway.url)
    env = {k: v for k, v in os.environ.items() if not k.startswith("RSMS_")}
    env.update(
        SMS_API_KEY=gateway.demo_key,
        RSMS_INGEST_PORT=str(gateway.ports["ingest"]),  # where `rsms send` finds the gateway
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
    )
    command = ["bash", "-euo", "pipefail", "-c", code] if language == "sh" else [sys.executable, "-c", code]
    ran = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert ran.returncode == 0, f"{code}\n--- stdout\n{ran.stdout}\n--- stderr\n{ran.stderr}"
    if code.startswith("curl"):
        assert json.loads(ran.stdout)["success"] is True, ran.stdout
    assert "Traceback" not in ran.stderr


def readme_commands() -> Iterator[tuple[str, list[str]]]:
    """(line, arguments) of every `rsms` command in the README's shell blocks, also as
    `docker compose run --rm <service> …` (the image's entry point is `rsms`). Optional
    parts in brackets count as given; `a | b` alternatives share the command group."""
    for block in re.findall(r"^```sh\n(.*?)^```", README, re.S | re.M):
        for line in block.replace("\\\n", " ").splitlines():
            if "rsms " not in line and "docker compose run" not in line:
                continue
            words = [PLACEHOLDERS.get(w, w).strip("[]") for w in shlex.split(line, comments=True) if w != "…"]
            command: list[str] = []
            for word in [*words, "&&"]:
                if word not in ("&&", ";"):
                    command.append(word)
                    continue
                if command[:4] == ["docker", "compose", "run", "--rm"]:
                    command = ["rsms", *command[5:]]
                if command and command[0].endswith("rsms"):
                    yield line, command[1:]
                command = []


def parse(arguments: list[str]) -> None:
    """Parse as `rsms` would, without running: an unknown command or option raises."""
    first, *alternatives = split_alternatives(arguments)
    group: click.Group = rsms
    command: click.Command = rsms
    name, words = "rsms", first
    while isinstance(command, click.Group):
        group = command
        found = group.get_command(click.Context(group), words[0])
        assert found is not None, f"no command {words[0]!r}"
        command, name, words = found, words[0], words[1:]
    command.make_context(name, words)
    for alternative in alternatives:
        found = group.get_command(click.Context(group), alternative[0])
        assert found is not None, f"no command {alternative[0]!r}"
        found.make_context(alternative[0], alternative[1:])


def split_alternatives(arguments: list[str]) -> list[list[str]]:
    parts: list[list[str]] = [[]]
    for word in arguments:
        if word == "|":
            parts.append([])
        else:
            parts[-1].append(word)
    return parts


def test_every_rsms_command_in_the_readme_parses(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SMS_API_KEY", "sk_test_" + "x" * 40)  # as the README says to set it
    commands = list(readme_commands())
    assert len(commands) > 20  # the README still shows its commands: else update this test
    for line, arguments in commands:
        try:
            parse(arguments)
        except (click.UsageError, click.BadParameter, AssertionError) as error:
            pytest.fail(f"README: {line.strip()}\n  {error}")


def test_every_default_in_the_readme_settings_table_is_accepted_when_pasted(monkeypatch: pytest.MonkeyPatch) -> None:
    rows = re.findall(r"^\| `(RSMS_[A-Z0-9_]+)` \| ([^|]+) \| `([^`]*)` \|", README, re.M)
    assert len(rows) > 40, "the README's settings table moved: update this test"
    classes = settings_classes()
    for variable, services, default in rows:
        if "<" in default:  # a placeholder such as <working dir>
            continue
        monkeypatch.setenv(variable, default)
        for service in services.split(", "):
            classes[service.strip()]()  # raises InvalidSetting for a value it refuses
        monkeypatch.delenv(variable)
