"""The three gateways `bench.peers` compares, each configured to send to the bench's SMPP sink.

- RSMS: `rsms up` (supervisor, ledger on its own chDB directory, dispatcher, ingest;
  the provider simulator idles), on its own RabbitMQ vhost and its own redis-server,
  `RSMS_PROVIDER_KIND=smpp` at the sink.
- Jasmin (PyPI `jasmin`, in `var/peers/jasmin-venv`): `jasmind.py` with a generated
  `jasmin.cfg` (its own vhost, its own redis-server), configured through jCli: a group,
  a user, an SMPP client connector to the sink and a default MT route to it.
- Kannel (Debian `kannel`): `bearerbox` and `smsbox` with a generated `kannel.conf`
  (an `smsc = smpp` group at the sink, a `sendsms-user`).

Each system says which processes are its own (for CPU accounting), whether it uses the
machine's RabbitMQ (then RabbitMQ's CPU counts too), and how wrk sends to it: a Lua script
that puts one random recipient (or a random block of 1,000) in every request.
Everything a system writes lives under `var/peers/<system>/`; vhosts are deleted at stop.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from bench.ingest_env import free_port, rabbitmqctl
from shared import accounts as store
from tests.support.redis_server import RedisServer

ROOT = Path(__file__).resolve().parents[1]
PEERS_DIR = ROOT / "var" / "peers"
JASMIN_VENV = PEERS_DIR / "jasmin-venv"
JASMIN_PYTHON = "python3.11"  # jasmin 0.11.1 installs and runs on it (Twisted 23.10, no pins needed)
MESSAGE = "Your verification code is 482913. It expires in 10 minutes."
SENDER = "RSMS"
TAG = "BENCH"
READY_TIMEOUT = 120.0


def wait_until(
    check: Callable[[], object],
    what: str,
    timeout: float = READY_TIMEOUT,
    process: subprocess.Popen[bytes] | None = None,
) -> object:
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"{what}: the process exited with {process.returncode}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(0.3)


def http_ok(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code < 500
    except httpx.HTTPError:
        return False


def port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def descendants(pid: int) -> list[int]:
    found, pending = [], [pid]
    while pending:
        parent = pending.pop()
        try:
            children = Path(f"/proc/{parent}/task/{parent}/children").read_text().split()
        except OSError:
            continue
        for child in map(int, children):
            found.append(child)
            pending.append(child)
    return found


def command_line(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def stop_group(process: subprocess.Popen[bytes] | None, sig: int = signal.SIGINT, timeout: float = 40) -> None:
    """Stops a process started with start_new_session=True, and everything in its group."""
    if process is None or process.poll() is not None:
        return
    os.killpg(process.pid, sig)
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(10)


class Vhost:
    """A RabbitMQ vhost of the bench's own on the machine's RabbitMQ; deleted at the end."""

    def __init__(self, prefix: str) -> None:
        self.name = f"{prefix}-{uuid.uuid4().hex[:8]}"
        self.created = False

    def create(self) -> str:
        rabbitmqctl("add_vhost", self.name)
        self.created = True
        rabbitmqctl("set_permissions", "-p", self.name, "guest", ".*", ".*", ".*")
        return self.name

    def delete(self) -> None:
        if self.created:
            rabbitmqctl("delete_vhost", self.name)
            self.created = False


@dataclass
class Load:
    """How wrk sends to a system: the URL and the Lua script."""

    url: str
    script: str


def lua_numbers(count: int, *, unique: bool = False) -> str:
    """Lua that sets `numbers` to `count` random Norwegian mobile numbers (digits only).

    `unique` (one recipient): a new number every request instead, counting up from
    4791000000 (9 million of them, none in the random 4790xxxxxx range), so a number that
    reaches the SMPP sink twice was sent twice. wrk runs one Lua state per thread: one
    thread, so the counter is the run's."""
    if unique:
        assert count == 1, "unique numbers: one recipient a request"
        return 'sent = (sent or 0) + 1\nlocal numbers = {string.format("479%07d", 1000000 + sent)}\n'
    if count == 1:
        return 'local numbers = {string.format("4790%06d", math.random(0, 999999))}\n'
    return (
        f"local base = math.random(0, 999999 - {count})\n"
        "local numbers = {}\n"
        f'for i = 0, {count - 1} do numbers[#numbers + 1] = string.format("4790%06d", base + i) end\n'
    )


LUA_PRELUDE = """
-- Counts 2xx answers only (wrk's own error count starts at 400); prints one JSON line at the end.
math.randomseed(os.time())
local threads = {}
setup = function(thread) table.insert(threads, thread) end
accepted = 0
response = function(status, headers, body)
  if status >= 200 and status < 300 then accepted = accepted + 1 end
end
done = function(summary, latency, requests)
  local ok = 0
  for _, thread in ipairs(threads) do ok = ok + thread:get("accepted") end
  local e = summary.errors
  io.write(string.format(
    '\\nPEERS_RESULT {"requests":%d,"accepted":%d,"duration_us":%d,"socket_errors":%d,"p99_us":%d}\\n',
    summary.requests, ok, summary.duration, e.connect + e.read + e.write + e.timeout,
    latency:percentile(99)))
end
"""


@dataclass
class System:
    name: str
    label: str
    guarantees: str
    uses_rabbitmq: bool
    sink_port: int
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def start(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def parts(self) -> dict[str, list[int]]:
        """The system's processes at this moment, by part (for CPU accounting)."""
        raise NotImplementedError

    def pids(self) -> list[int]:
        return [pid for pids in self.parts().values() for pid in pids]

    def load(self, recipients: int) -> Load | None:
        """wrk's target; None when the system has no way to take `recipients` in one request."""
        raise NotImplementedError


# --- RSMS ---------------------------------------------------------------------------------


RSMS_ALL_SERVICES = ("ingest", "dispatcher", "ledger", "webhooks", "provider-sim")
"""Every service `rsms up` starts, each counted: the webhook sender too, though no project
has a webhook here, so its event queues are unbound and it gets no copies (it took and
acked every outcome message unread before; the simulator idles: RSMS sends over SMPP to
the sink here)."""


class Rsms(System):
    def __init__(
        self,
        sink_port: int,
        settings: dict[str, str],
        directory: Path = PEERS_DIR / "rsms",
        amqp_url: str | None = None,
    ) -> None:
        super().__init__(
            "rsms",
            "RSMS (this branch)",
            "200 after a publisher confirm on a quorum queue (replicated, fsynced); every recipient "
            "recorded in the ledger (ClickHouse); send markers in Redis against sending twice",
            uses_rabbitmq=True,
            sink_port=sink_port,
        )
        self.dir = directory
        self.vhost = Vhost("rsms-bench-peers")
        self.redis: RedisServer | None = None
        self.port = free_port()
        self.ops_port = free_port()  # ingest's /metrics, all workers together
        self.key = ""
        self.extra_settings = settings
        self.up: subprocess.Popen[bytes] | None = None
        # A RabbitMQ of the caller's (bench.faults_under_load restarts its own node); by
        # default a vhost of the bench's own on the machine's RabbitMQ.
        self.amqp_url = amqp_url

    def start(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)
        (self.dir / "var").mkdir(parents=True, mode=0o700)
        amqp_url = self.amqp_url or f"amqp://guest:guest@localhost:5672/{self.vhost.create()}"
        self.redis = RedisServer(free_port(), self.dir / "redis", appendonly=True).start()
        accounts = self.dir / "var" / "accounts.toml"
        with store.editing(accounts) as data:
            store.create_project(data, "bench", "Bench")
            _, self.key = store.issue_key(data, "bench", "live")
            store.set_tag(data, "bench", TAG, SENDER)
            store.set_limits(
                data,
                "bench",
                store.ProjectLimits(
                    requests_per_minute=50_000_000, tag_requests_per_minute=50_000_000, concurrent_requests=100_000
                ),
            )
        env = {k: v for k, v in os.environ.items() if not k.startswith("RSMS_")}
        env.update(
            RSMS_AMQP_URL=amqp_url,
            RSMS_REDIS_URL=self.redis.url,
            RSMS_ACCOUNTS_FILE=str(accounts),
            RSMS_INGEST_PORT=str(self.port),
            RSMS_INGEST_OPS_PORT=str(self.ops_port),
            RSMS_WEBHOOKS_HTTP_PORT=str(free_port()),
            RSMS_DISPATCHER_HTTP_PORT=str(free_port()),
            RSMS_LEDGER_HTTP_PORT=str(free_port()),
            RSMS_PROVIDER_SIM_PORT=str(free_port()),
            RSMS_PROVIDER_KIND="smpp",
            RSMS_SMPP_HOST="127.0.0.1",
            RSMS_SMPP_PORT=str(self.sink_port),
            RSMS_SMPP_SYSTEM_ID="rsms",
            RSMS_SMPP_PASSWORD="rsms",
            # The peers ask for no receipts either, and the sink sends none.
            RSMS_SMPP_REGISTERED_DELIVERY="0",
            RSMS_LOG_FORMAT="json",
            PYTHONPATH=str(ROOT),
            **self.extra_settings,
        )
        log = (self.dir / "up.log").open("wb")
        self.up = subprocess.Popen(
            [sys.executable, "-m", "cli", "up"],
            cwd=self.dir,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        self.processes = [self.up]
        wait_until(lambda: http_ok(f"http://127.0.0.1:{self.port}/health/ready"), "RSMS ready", process=self.up)

    def stop(self) -> None:
        stop_group(self.up, signal.SIGINT, timeout=60)
        if self.redis is not None:
            self.redis.stop()
        self.vhost.delete()

    def parts(self, services: tuple[str, ...] = RSMS_ALL_SERVICES) -> dict[str, list[int]]:
        """The supervisor, each of `services` with its workers, and its own redis-server."""
        if self.up is None:
            return {}
        found: dict[str, list[int]] = {"supervisor": [self.up.pid]}
        for pid in descendants(self.up.pid):
            words = command_line(pid).split()
            service = next((w for w in services if w in words), None)
            if service is not None:
                found.setdefault(service, []).extend([pid, *descendants(pid)])
        if self.redis is not None and self.redis.pid is not None:
            found["redis"] = [self.redis.pid]
        return found

    def load(self, recipients: int, *, unique: bool = False) -> Load:
        script = (
            LUA_PRELUDE
            + f"""
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer {self.key}"
request = function()
  {lua_numbers(recipients, unique=unique)}
  local quoted = {{}}
  for i, n in ipairs(numbers) do quoted[i] = '"+' .. n .. '"' end
  local body = '{{"tag":"{TAG}","recipients":[' .. table.concat(quoted, ",") .. '],"message":"{MESSAGE}"}}'
  return wrk.format(nil, nil, nil, body)
end
"""
        )
        return Load(f"http://127.0.0.1:{self.port}/api/v1/sms/send", script)


# --- Jasmin -------------------------------------------------------------------------------


class Jasmin(System):
    def __init__(self, sink_port: int) -> None:
        super().__init__(
            "jasmin",
            "Jasmin 0.11.1 (PyPI `jasmin`)",
            "200 once the submit is written to RabbitMQ as a transient message on a non-durable queue, "
            "no publisher confirm (a broker restart loses what is queued); no ledger; Redis for receipts",
            uses_rabbitmq=True,
            sink_port=sink_port,
        )
        self.dir = PEERS_DIR / "jasmin"
        self.vhost = Vhost("jasmin-bench-peers")
        self.redis: RedisServer | None = None
        self.http_port = free_port()
        self.jcli_port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @staticmethod
    def install() -> None:
        if (JASMIN_VENV / "bin" / "jasmind.py").exists():
            return
        PEERS_DIR.mkdir(parents=True, exist_ok=True)
        subprocess.run([JASMIN_PYTHON, "-m", "venv", str(JASMIN_VENV)], check=True)
        subprocess.run([str(JASMIN_VENV / "bin" / "pip"), "install", "-q", "jasmin==0.11.1"], check=True)

    def config(self, vhost: str, redis_port: int, amqp_spec: Path) -> str:
        sections: dict[str, dict[str, object]] = {
            "jcli": {"bind": "127.0.0.1", "port": self.jcli_port, "authentication": "False"},
            "http-api": {"bind": "127.0.0.1", "port": self.http_port},
            "router": {"bind": "127.0.0.1", "port": free_port()},
            "client-management": {"bind": "127.0.0.1", "port": free_port()},
            # jCli needs the SMPP server running (it manages its users); nobody binds to it here.
            "smpp-server": {"bind": "127.0.0.1", "port": free_port()},
            "smpp-server-pb": {"bind": "127.0.0.1", "port": free_port()},
            "interceptor-client": {"port": free_port()},
            "amqp-broker": {"host": "127.0.0.1", "port": 5672, "vhost": vhost, "spec": amqp_spec},
            "redis-client": {"host": "127.0.0.1", "port": redis_port, "dbid": 0},
        }
        return "".join(
            f"[{name}]\n" + "".join(f"{key} = {value}\n" for key, value in values.items()) + "\n"
            for name, values in sections.items()
        )

    def env(self) -> dict[str, str]:
        return {**os.environ, "ROOT_PATH": str(self.dir), "HOSTNAME": "bench"}

    def start(self) -> None:
        if not (JASMIN_VENV / "bin" / "jasmind.py").exists():
            raise RuntimeError(f"Jasmin is not installed in {JASMIN_VENV}: run with --install")
        shutil.rmtree(self.dir, ignore_errors=True)
        for sub in ("etc/jasmin/store", "etc/jasmin/resource", "var/log/jasmin"):
            (self.dir / sub).mkdir(parents=True)
        vhost = self.vhost.create()
        self.redis = RedisServer(free_port(), self.dir / "redis", appendonly=False).start()
        config = self.dir / "etc" / "jasmin" / "jasmin.cfg"
        # txAMQP's copy of the AMQP 0-9-1 spec (Jasmin's default path is under /etc/jasmin).
        spec = next((JASMIN_VENV / "lib").glob("python3*/site-packages/txamqp/specs/standard/amqp0-9-1.stripped.xml"))
        config.write_text(self.config(vhost, self.redis.port, spec))
        log = (self.dir / "jasmind.out").open("wb")
        self.process = subprocess.Popen(
            [str(JASMIN_VENV / "bin" / "python"), str(JASMIN_VENV / "bin" / "jasmind.py"), "-c", str(config)],
            cwd=self.dir,
            env=self.env(),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        self.processes = [self.process]
        wait_until(lambda: port_open(self.jcli_port), "Jasmin's jCli", process=self.process)
        self.configure()
        wait_until(
            lambda: http_ok(f"http://127.0.0.1:{self.http_port}/ping"), "Jasmin's HTTP API", process=self.process
        )
        wait_until(self.connector_bound, "Jasmin bound to the sink", timeout=60)

    def jcli(self, commands: list[str]) -> str:
        """Types `commands` into jCli, one line each, and returns what it answered."""
        with socket.create_connection(("127.0.0.1", self.jcli_port), timeout=20) as sock:
            answer = b""

            def read_until(done: Callable[[bytes], bool]) -> None:
                nonlocal answer
                chunk = b""
                while not done(chunk):
                    data = sock.recv(65536)
                    if not data:
                        break
                    chunk += data
                answer += chunk

            # The banner ends with the session's reference; the first prompt comes with the first answer.
            read_until(lambda text: b"Session ref" in text and text.endswith(b"\n"))
            for command in commands:
                sock.sendall(command.encode() + b"\r\n")
                read_until(lambda text: text.rstrip().endswith((b">", b"jcli :")))
            sock.sendall(b"quit\r\n")
        return answer.decode(errors="replace")

    def configure(self) -> None:
        script = [
            "group -a", "gid bench", "ok",
            "user -a", "username bench", "password bench", "gid bench", "uid bench", "ok",
            "smppccm -a", "cid sink", "host 127.0.0.1", f"port {self.sink_port}", "username jasmin",
            "password jasmin", "submit_throughput 0", "ok",
            "mtrouter -a", "type DefaultRoute", "connector smppc(sink)", "rate 0.00", "ok",
            "smppccm -1 sink",
        ]  # fmt: skip
        output = self.jcli(script)
        (self.dir / "jcli.out").write_text(output)
        if "Successfully added" not in output or "Successfully started" not in output:
            raise RuntimeError(f"Jasmin's jCli did not take the configuration:\n{output[-2000:]}")

    def connector_bound(self) -> bool:
        return "BOUND_TRX" in self.jcli(["smppccm -l"])

    def stop(self) -> None:
        stop_group(self.process, signal.SIGTERM, timeout=30)
        if self.redis is not None:
            self.redis.stop()
        self.vhost.delete()

    def parts(self) -> dict[str, list[int]]:
        if self.process is None:
            return {}
        found = {"jasmind": [self.process.pid, *descendants(self.process.pid)]}
        if self.redis is not None and self.redis.pid is not None:
            found["redis"] = [self.redis.pid]
        return found

    def load(self, recipients: int) -> Load | None:
        if recipients != 1:
            return None  # its HTTP API takes one `to` a request (batches only via the Celery REST API)
        text = MESSAGE.replace(" ", "+")
        script = (
            LUA_PRELUDE
            + f"""
request = function()
  {lua_numbers(1)}
  return wrk.format("GET", "/send?username=bench&password=bench&from={SENDER}&to=" .. numbers[1] .. "&content={text}")
end
"""
        )
        return Load(f"http://127.0.0.1:{self.http_port}/send", script)


# --- Kannel -------------------------------------------------------------------------------


class Kannel(System):
    def __init__(self, sink_port: int, window: int | None = None) -> None:
        super().__init__(
            "kannel",
            "Kannel 1.4.5 (Debian `kannel`)",
            "202 once the message is in bearerbox's memory and its store file (written "
            "asynchronously, not fsynced per message); no ledger",
            uses_rabbitmq=False,
            sink_port=sink_port,
        )
        self.dir = PEERS_DIR / "kannel"
        # submit_sm outstanding on its bind (`max-pending-submits`, Kannel's default 10).
        self.window = window
        self.admin_port = free_port()
        self.smsbox_port = free_port()
        self.sendsms_port = free_port()
        self.bearerbox: subprocess.Popen[bytes] | None = None
        self.smsbox: subprocess.Popen[bytes] | None = None

    @staticmethod
    def install() -> None:
        if shutil.which("bearerbox"):
            return
        subprocess.run(["apt-get", "update", "-q"], check=True)
        subprocess.run(["apt-get", "install", "-y", "-q", "kannel"], check=True, env={**os.environ,
                       "DEBIAN_FRONTEND": "noninteractive"})  # fmt: skip

    def config(self) -> str:
        d = self.dir
        return f"""
group = core
admin-port = {self.admin_port}
admin-password = bench
status-password = bench
admin-allow-ip = "127.0.0.1"
smsbox-port = {self.smsbox_port}
box-allow-ip = "127.0.0.1"
log-file = "{d}/bearerbox.log"
log-level = 1
store-type = file
store-location = "{d}/store"

group = smsbox
bearerbox-host = 127.0.0.1
bearerbox-port = {self.smsbox_port}
sendsms-port = {self.sendsms_port}
log-file = "{d}/smsbox.log"
log-level = 1

group = sendsms-user
username = bench
password = bench

group = smsc
smsc = smpp
smsc-id = sink
host = 127.0.0.1
port = {self.sink_port}
receive-port = 0
transceiver-mode = true
smsc-username = kannel
smsc-password = kannel
system-type = ""
""" + (f"max-pending-submits = {self.window}\n" if self.window else "")

    def start(self) -> None:
        if not shutil.which("bearerbox"):
            raise RuntimeError("Kannel is not installed: run with --install (apt-get install kannel)")
        shutil.rmtree(self.dir, ignore_errors=True)
        self.dir.mkdir(parents=True)
        conf = self.dir / "kannel.conf"
        conf.write_text(self.config())
        self.bearerbox = self._spawn("bearerbox", conf)
        wait_until(lambda: port_open(self.smsbox_port), "Kannel's bearerbox", process=self.bearerbox)
        self.smsbox = self._spawn("smsbox", conf)
        self.processes = [self.bearerbox, self.smsbox]
        wait_until(lambda: port_open(self.sendsms_port), "Kannel's smsbox", process=self.smsbox)
        wait_until(self.online, "Kannel bound to the sink", timeout=60)

    def _spawn(self, binary: str, conf: Path) -> subprocess.Popen[bytes]:
        log = (self.dir / f"{binary}.out").open("wb")
        process = subprocess.Popen(
            [shutil.which(binary) or binary, str(conf)],
            cwd=self.dir,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        return process

    def online(self) -> bool:
        try:
            status = httpx.get(f"http://127.0.0.1:{self.admin_port}/status.txt?password=bench", timeout=2).text
        except httpx.HTTPError:
            return False
        return "online" in status.split("SMSC connections:")[-1]

    def stop(self) -> None:
        stop_group(self.smsbox, signal.SIGTERM, timeout=20)
        stop_group(self.bearerbox, signal.SIGTERM, timeout=20)

    def parts(self) -> dict[str, list[int]]:
        return {name: [p.pid] for name, p in (("bearerbox", self.bearerbox), ("smsbox", self.smsbox)) if p is not None}

    def load(self, recipients: int) -> Load:
        text = MESSAGE.replace(" ", "+")
        script = (
            LUA_PRELUDE
            + f"""
request = function()
  {lua_numbers(recipients)}
  -- Several recipients: `to` lists them separated by spaces ("+" in a URL); "%2B" is the "+" of a number.
  local to = "%2B" .. table.concat(numbers, "+%2B")
  return wrk.format("GET", "/cgi-bin/sendsms?username=bench&password=bench&from={SENDER}&to=" .. to .. "&text={text}")
end
"""
        )
        return Load(f"http://127.0.0.1:{self.sendsms_port}/cgi-bin/sendsms", script)
