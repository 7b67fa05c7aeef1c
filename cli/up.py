"""`rsms up`: the whole gateway on one machine, one command, Ctrl-C to stop.

Starts the provider simulator, the ledger (owning embedded ClickHouse under `var/`), the
dispatcher(s), the webhook sender and the ingest API as separate processes, prefixes their log lines,
restarts any that dies (`cli/supervisor.py`), and stops every one of them on Ctrl-C. It
refuses to start (exit code 2) when a port it needs is taken, in one line naming the
setting and the process that holds it: otherwise the service that cannot bind its port
would exit and be restarted again and again, its error among every other service's lines.
`--provider smpp` sends through the simulator's SMPP face instead of its HTTP API.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import click
import httpx

from cli.ports import port_owner, port_taken
from cli.supervisor import FatalExit, Service, Supervisor
from services.dispatcher.settings import DispatcherSettings
from services.ingest.settings import IngestSettings
from services.ledger.settings import LedgerSettings
from services.provider_sim.settings import ProviderSimSettings
from services.webhooks.settings import WebhooksSettings
from shared import accounts as store
from shared.redis_connection import parse_redis_url
from shared.settings import settings_classes

COLOURS = ("cyan", "green", "yellow", "magenta", "blue", "red")
DEMO_PROJECT = "demo"
DEMO_TAG = "demo"
PORT_TAKEN_EXIT_CODE = 2
READY_TIMEOUT_SECONDS = 90


@dataclass(frozen=True)
class Listener:
    """A port a service will listen on, and the settings that choose it."""

    service: str
    host: str
    port: int
    setting: str


def _reachable(url: str, default_port: int) -> bool:
    parts = urlsplit(url)
    return _host_reachable(parts.hostname or "localhost", parts.port or default_port)


def _host_reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), 2):
            return True
    except OSError:
        return False


def check_dependencies(settings: IngestSettings) -> list[str]:
    """What is missing, each with how to start it; empty when RabbitMQ and Redis answer."""
    problems = []
    amqp_urls = [url.strip() for url in settings.amqp_url.split(",") if url.strip()]
    if not any(_reachable(url, 5672) for url in amqp_urls):
        where = ", ".join(urlsplit(url).netloc.split("@")[-1] for url in amqp_urls)
        problems.append(
            f"RabbitMQ does not answer at {where}.\n"
            "  Start it:  rabbitmq-server -detached      (Debian/Ubuntu: apt-get install rabbitmq-server)\n"
            "  or point RSMS_AMQP_URL at yours, or run everything with `docker compose up`."
        )
    redis_hosts = parse_redis_url(settings.redis_url).hosts
    if not any(_host_reachable(host, port) for host, port in redis_hosts):
        problems.append(
            f"Redis does not answer at {','.join(f'{host}:{port}' for host, port in redis_hosts)}.\n"
            "  Start it (it must persist: Idempotency-Keys outlive a restart only with its append-only file):\n"
            "    mkdir -p -m 700 var/redis && redis-server --daemonize yes --bind 127.0.0.1 --port 6379 "
            '--appendonly yes --dir "$PWD/var/redis"\n'
            "  or point RSMS_REDIS_URL at yours (with --appendonly yes)."
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


def smpp_env(dispatcher: DispatcherSettings) -> dict[str, str]:
    """`--provider smpp`: the simulator's SMPP face on the dispatcher's RSMS_SMPP_PORT, taking
    its RSMS_SMPP_SYSTEM_ID, and the dispatchers bound to it."""
    return {
        "RSMS_PROVIDER_KIND": "smpp",
        "RSMS_SMPP_HOST": "127.0.0.1",
        "RSMS_PROVIDER_SIM_SMPP_PORT": str(dispatcher.smpp_port),
        "RSMS_PROVIDER_SIM_SMPP_SYSTEM_ID": dispatcher.smpp_system_id,
    }


def listeners(dispatchers: int, provider: str = "http") -> list[Listener]:
    """Every port `rsms up` will have its services listen on."""
    ingest, dispatcher = IngestSettings(), DispatcherSettings()
    ledger, simulator = LedgerSettings(), ProviderSimSettings()
    found = [
        Listener("provider-sim", simulator.provider_sim_host, simulator.provider_sim_port, "RSMS_PROVIDER_SIM_PORT"),
        Listener("ledger", ledger.ledger_http_host, ledger.ledger_http_port, "RSMS_LEDGER_HTTP_PORT"),
    ]
    if provider == "smpp":
        found.append(Listener("provider-sim SMPP", simulator.provider_sim_host, dispatcher.smpp_port, "RSMS_SMPP_PORT"))
    for index in range(dispatchers):
        port = dispatcher.dispatcher_http_port + (100 + index if dispatchers > 1 else 0)
        found.append(
            Listener(f"dispatcher-{index + 1}", dispatcher.dispatcher_http_host, port, "RSMS_DISPATCHER_HTTP_PORT")
        )
    webhooks = WebhooksSettings()
    found.append(
        Listener("webhooks", webhooks.webhooks_http_host, webhooks.webhooks_http_port, "RSMS_WEBHOOKS_HTTP_PORT")
    )
    found.append(Listener("ingest", ingest.ingest_host, ingest.ingest_port, "RSMS_INGEST_PORT"))
    found.append(Listener("ingest-ops", ingest.ingest_ops_host, ingest.ingest_ops_port, "RSMS_INGEST_OPS_PORT"))
    return found


def status_services(wanted: list[Listener]) -> dict[str, str]:
    """Each service's ops URL but the ledger's own, for its status page."""
    return {
        listener.service.removesuffix("-ops"): f"http://127.0.0.1:{listener.port}"
        for listener in wanted
        if listener.service == "ingest-ops" or listener.service.startswith("dispatcher")
    }


def status_page_url() -> str:
    """The ledger's status page (it serves it on its ops port)."""
    ledger = LedgerSettings()
    return f"http://127.0.0.1:{ledger.ledger_http_port}/status"


def taken_port_problem(wanted: list[Listener]) -> str | None:
    """One line about the first port already in use, or None when all are free."""
    for listener in wanted:
        if port_taken(listener.host, listener.port):
            owner = port_owner(listener.port)
            held = f" by {owner}" if owner else ""
            return (
                f"rsms up: port {listener.port} ({listener.setting}, for {listener.service}) is already in use{held}; "
                f"stop that process or set {listener.setting} to a free port"
            )
    return None


def _wait_ready(url: str, supervisor: Supervisor, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        supervisor.tend()
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
@click.option(
    "--provider",
    type=click.Choice(["http", "smpp"]),
    default="http",
    show_default=True,
    help="How the dispatchers reach the simulator: its HTTP API or its SMPP face (SMPP 3.4).",
)
def up(dispatchers: int, provider: str) -> None:
    """Start the whole gateway: simulator, ledger, dispatcher(s), webhook sender and the API."""
    settings = IngestSettings()
    wanted = listeners(dispatchers, provider)
    taken = taken_port_problem(wanted)
    if taken:
        click.echo(taken, err=True)
        raise SystemExit(PORT_TAKEN_EXIT_CODE)
    problems = check_dependencies(settings)
    if problems:
        for problem in problems:
            click.secho(problem, fg="red", err=True)
        raise SystemExit(1)

    demo_key = ensure_demo_project(settings.accounts_file)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.setdefault("RSMS_LOG_FORMAT", "console")
    if provider == "smpp":
        env.update(smpp_env(DispatcherSettings()))
    ports = {listener.service: listener.port for listener in wanted}
    services = [
        Service("provider-sim", ["provider-sim"], COLOURS[0]),
        # The status page (on the ledger's ops port) shows the health of the others.
        Service("ledger", ["ledger"], COLOURS[1], {"RSMS_LEDGER_STATUS_SERVICES": json.dumps(status_services(wanted))}),
        *(
            # Several dispatchers on one machine need their own health/metrics ports.
            Service(name, ["dispatcher"], COLOURS[2], {"RSMS_DISPATCHER_HTTP_PORT": str(ports[name])})
            for name in (f"dispatcher-{i + 1}" for i in range(dispatchers))
        ),
        Service("webhooks", ["webhooks"], COLOURS[4]),
        Service("ingest", ["ingest"], COLOURS[3]),
    ]
    stop_seconds = max(settings_class().stop_seconds() for settings_class in settings_classes().values())
    supervisor = Supervisor(services, env, stop_seconds)
    stopping = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, lambda *_: stopping.set())
    try:
        supervisor.start_all()
        ready_url = f"http://127.0.0.1:{settings.ingest_port}/health/ready"
        if not _wait_ready(ready_url, supervisor, READY_TIMEOUT_SECONDS):
            click.secho("The gateway did not become ready; see the log lines above.", fg="red", err=True)
            raise SystemExit(1)
        click.secho(
            f"\nRSMS Gateway is up: http://127.0.0.1:{settings.ingest_port}  "
            f"(API docs: /docs; status page: {status_page_url()}). Ctrl-C stops it.",
            fg="green",
            bold=True,
        )
        if demo_key:
            click.secho("\nA demo project with a test key was created (the key is shown only now):", bold=True)
            click.echo(curl_command(settings.ingest_port, demo_key) + "\n")
        else:
            click.echo("Issue a key for a curl test with: rsms accounts issue-key demo --test\n")
        while not stopping.is_set():
            supervisor.tend()
            stopping.wait(0.5)
    except FatalExit as fatal:
        click.secho(str(fatal), fg="red", err=True)
        raise SystemExit(1) from None
    except KeyboardInterrupt:
        pass
    finally:
        click.echo("Stopping…")
        supervisor.stop_all()
