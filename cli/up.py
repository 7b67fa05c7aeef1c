"""`rsms up`: the whole gateway on one machine, one command, Ctrl-C to stop.

Starts the provider simulator, the ledger (owning embedded ClickHouse under `var/`), the
dispatcher(s) and the ingest API as separate processes, prefixes their log lines, and
stops them all cleanly on Ctrl-C or when one of them dies.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO
from urllib.parse import urlsplit

import click
import httpx

from services.ingest.settings import IngestSettings
from shared import accounts as store

COLOURS = ("cyan", "green", "yellow", "magenta", "blue", "red")
DEMO_PROJECT = "demo"
DEMO_TAG = "demo"
STOP_GRACE_SECONDS = 20


@dataclass
class Service:
    name: str
    args: list[str]
    colour: str
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)


def _reachable(url: str, default_port: int) -> bool:
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname or "localhost", parts.port or default_port), 2):
            return True
    except OSError:
        return False


def check_dependencies(settings: IngestSettings) -> list[str]:
    """What is missing, each with how to start it; empty when RabbitMQ and Redis answer."""
    problems = []
    if not _reachable(settings.amqp_url, 5672):
        problems.append(
            f"RabbitMQ does not answer at {urlsplit(settings.amqp_url).netloc.split('@')[-1]}.\n"
            "  Start it:  rabbitmq-server -detached      (Debian/Ubuntu: apt-get install rabbitmq-server)\n"
            "  or point RSMS_AMQP_URL at yours, or run everything with `docker compose up`."
        )
    if not _reachable(settings.redis_url, 6379):
        problems.append(
            f"Redis does not answer at {urlsplit(settings.redis_url).netloc}.\n"
            "  Start it:  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save '' --appendonly no\n"
            "  or point RSMS_REDIS_URL at yours."
        )
    return problems


def ensure_demo_project(path: Path) -> str | None:
    """On first run, a demo project with a tag and a test key; returns the key (shown once)."""
    if store.load_accounts(path).projects:
        return None
    with store.editing(path) as data:
        store.create_project(data, DEMO_PROJECT, "Demo project")
        store.set_tag(data, DEMO_PROJECT, DEMO_TAG, "RSMS")
        _, key = store.issue_key(data, DEMO_PROJECT, "test")
    return key


def curl_command(port: int, key: str) -> str:
    return (
        f"curl -s -X POST http://127.0.0.1:{port}/api/v1/sms/send \\\n"
        f'  -H "Authorization: Bearer {key}" -H "Content-Type: application/json" \\\n'
        f'  -d \'{{"tag": "{DEMO_TAG}", "recipients": ["+4712345678"], "message": "Hello from RSMS Gateway!"}}\''
    )


def _pump(service: Service, stream: IO[bytes], width: int) -> None:
    prefix = click.style(f"{service.name:<{width}} |", fg=service.colour)
    for raw in iter(stream.readline, b""):
        click.echo(f"{prefix} {raw.decode(errors='replace').rstrip()}")


def _start(service: Service, env: dict[str, str], width: int) -> None:
    service.process = subprocess.Popen(
        [sys.executable, "-m", "cli", *service.args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=env,
        start_new_session=True,  # Ctrl-C reaches only us; we stop the children in order
    )
    assert service.process.stdout is not None
    threading.Thread(target=_pump, args=(service, service.process.stdout, width), daemon=True).start()


def _stop_all(services: list[Service]) -> None:
    running = [s for s in services if s.process and s.process.poll() is None]
    for service in reversed(running):  # the API first, so nothing new is accepted
        assert service.process is not None
        service.process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + STOP_GRACE_SECONDS
    for service in running:
        assert service.process is not None
        try:
            service.process.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            click.echo(f"{service.name} did not stop in {STOP_GRACE_SECONDS}s; killing it", err=True)
            service.process.kill()
            service.process.wait()


def _wait_ready(url: str, services: list[Service], timeout: float = 60) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(s.process and s.process.poll() is not None for s in services):
            return False
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return True
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    return False


@click.command("up")
@click.option(
    "--dispatchers", default=1, show_default=True, type=click.IntRange(1, 16), help="Dispatcher processes side by side."
)
def up(dispatchers: int) -> None:
    """Start the whole gateway: simulator, ledger, dispatcher(s) and the API."""
    settings = IngestSettings()
    problems = check_dependencies(settings)
    if problems:
        for problem in problems:
            click.secho(problem, fg="red", err=True)
        raise SystemExit(1)

    demo_key = ensure_demo_project(settings.accounts_file)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.setdefault("RSMS_LOG_FORMAT", "console")
    services = [
        Service("provider-sim", ["provider-sim"], COLOURS[0]),
        Service("ledger", ["ledger"], COLOURS[1]),
        *(Service(f"dispatcher-{i + 1}", ["dispatcher"], COLOURS[2]) for i in range(dispatchers)),
        Service("ingest", ["ingest"], COLOURS[3]),
    ]
    width = max(len(s.name) for s in services)
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    try:
        for service in services:
            _start(service, env | _dispatcher_port(service, dispatchers), width)
        ready_url = f"http://127.0.0.1:{settings.ingest_port}/health/ready"
        if not _wait_ready(ready_url, services):
            click.secho("The gateway did not become ready; see the log lines above.", fg="red", err=True)
            raise SystemExit(1)
        click.secho(
            f"\nRSMS Gateway is up: http://127.0.0.1:{settings.ingest_port}  "
            f"(API docs: /docs, metrics: /metrics). Ctrl-C stops it.",
            fg="green",
            bold=True,
        )
        if demo_key:
            click.secho("\nA demo project with a test key was created (the key is shown only now):", bold=True)
            click.echo(curl_command(settings.ingest_port, demo_key) + "\n")
        else:
            click.echo("Issue a key for a curl test with: rsms accounts issue-key demo --test\n")
        while not stopping.is_set():
            dead = [(s.name, code) for s in services if s.process and (code := s.process.poll()) is not None]
            if dead:
                click.secho(f"{dead[0][0]} exited with code {dead[0][1]}; stopping the gateway", fg="red", err=True)
                raise SystemExit(1)
            stopping.wait(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        click.echo("Stopping…")
        _stop_all(services)


def _dispatcher_port(service: Service, count: int) -> dict[str, str]:
    """Several dispatchers on one machine need their own health/metrics ports."""
    if not service.name.startswith("dispatcher-") or count == 1:
        return {}
    base = int(os.environ.get("RSMS_DISPATCHER_HTTP_PORT", "8081"))
    index = int(service.name.rsplit("-", 1)[1]) - 1
    return {"RSMS_DISPATCHER_HTTP_PORT": str(base + 100 + index)}
