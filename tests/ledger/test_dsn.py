"""DSNs naming several ClickHouse hosts, the order the ledger tries them in, and how its
client moves on from a host that fails (unit tests; the failover against real ClickHouse
nodes is in tests/cluster/test_ledger_clickhouse_cluster.py, where Docker runs)."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from clickhouse_connect.driver.exceptions import DatabaseError, OperationalError

from services.ledger.clickhouse import FailoverClient, StorageUnavailable, moves_on, open_client
from services.ledger.dsn import dsn_hosts, host_dsns, next_host
from services.ledger.settings import LedgerSettings
from shared.settings import InvalidSetting


@pytest.mark.parametrize(
    ("dsn", "expected"),
    [
        (
            "http://ledger:s3cret@h1:8123,h2:8123/rsms",
            ["http://ledger:s3cret@h1:8123/rsms", "http://ledger:s3cret@h2:8123/rsms"],
        ),
        (
            "https://u:p%40ss@ch-a.example:8443,ch-b.example:8443,ch-c.example:8443?compress=lz4",
            [
                "https://u:p%40ss@ch-a.example:8443?compress=lz4",
                "https://u:p%40ss@ch-b.example:8443?compress=lz4",
                "https://u:p%40ss@ch-c.example:8443?compress=lz4",
            ],
        ),
        (
            "clickhouse://default:@h1:8123, h2:8123/",
            ["clickhouse://default:@h1:8123/", "clickhouse://default:@h2:8123/"],
        ),
        ("http://h1,h2", ["http://h1", "http://h2"]),
        ("http://a:b@c@h1:8123,h2:8123", ["http://a:b@c@h1:8123", "http://a:b@c@h2:8123"]),
        ("http://user:pass@localhost:8123", ["http://user:pass@localhost:8123"]),
        ("chdb:///var/lib/rsms/clickhouse", ["chdb:///var/lib/rsms/clickhouse"]),
    ],
)
def test_a_dsn_becomes_one_single_host_dsn_per_host(dsn, expected):
    assert host_dsns(dsn) == expected


def test_the_hosts_of_a_dsn():
    assert dsn_hosts("http://u:p@h1:8123,[::1]:8123/db") == ["h1:8123", "[::1]:8123"]
    assert dsn_hosts("chdb:///abs/dir") == []


@pytest.mark.parametrize("dsn", ["http://u:p@h1:8123,,h2:8123", "http://u:p@/db", "h1:8123,h2:8123"])
def test_a_dsn_without_a_host_or_scheme_is_refused(dsn):
    with pytest.raises(ValueError, match="DSN"):
        host_dsns(dsn)


def test_after_a_failed_host_the_next_is_tried_wrapping_round():
    assert [next_host(i, 3) for i in range(3)] == [1, 2, 0]
    assert next_host(0, 1) == 0
    with pytest.raises(ValueError):
        next_host(0, 0)


def test_which_failures_move_on_to_another_host():
    assert moves_on(OperationalError("Error executing HTTP request"))
    assert moves_on(ConnectionRefusedError())
    assert moves_on(DatabaseError("Table is in readonly mode", code=242))
    assert moves_on(DatabaseError("Coordination::Exception", code=999))
    assert not moves_on(DatabaseError("Syntax error", code=62))
    assert not moves_on(DatabaseError("Unknown table", code=60))
    assert not moves_on(ValueError("not ClickHouse's"))


class Host:
    """Stands in for one ClickHouse server in these unit tests."""

    def __init__(self, name: str, up: bool = True) -> None:
        self.name = name
        self.up = up
        self.fail_with: Exception | None = None
        self.barrier: threading.Barrier | None = None
        self.statements: list[str] = []
        self.closed = 0

    def command(self, sql: str) -> str:
        if self.barrier is not None:
            self.barrier.wait(timeout=30)
        if not self.up:
            raise OperationalError(f"{self.name} does not answer")
        if self.fail_with is not None:
            raise self.fail_with
        self.statements.append(sql)
        return self.name

    def close(self) -> None:
        self.closed += 1


def failover(hosts: dict[str, Host], first: int = 0) -> FailoverClient:
    def connect(dsn: str) -> Host:
        host = hosts[dsn]
        if not host.up:
            raise OperationalError(f"cannot connect to {dsn}")
        return host

    return FailoverClient(list(hosts), connect, first=first)


def test_the_client_connects_to_a_live_host_and_moves_on_when_it_fails():
    hosts = {name: Host(name) for name in ("h1", "h2", "h3")}
    hosts["h1"].up = False
    client = failover(hosts)
    assert client.host_index == 1  # h1 refused the connection
    assert client.command("SELECT 1") == "h2"
    hosts["h2"].up = False
    assert client.command("SELECT 2") == "h3"  # tried on h2, then on h3, in the same call
    assert hosts["h2"].closed == 1
    assert client.host_index == 2
    hosts["h3"].up = False
    hosts["h1"].up = True
    assert client.command("SELECT 3") == "h1"  # wraps round
    assert [h.statements for h in hosts.values()] == [["SELECT 3"], ["SELECT 1"], ["SELECT 2"]]


def test_two_threads_failing_on_one_host_at_once_move_on_once():
    hosts = {name: Host(name) for name in ("h1", "h2", "h3")}
    client = failover(hosts)
    hosts["h1"].up = False
    hosts["h1"].barrier = threading.Barrier(2)  # both statements are on h1 when it fails
    with ThreadPoolExecutor(2) as pool:
        answers = list(pool.map(client.command, ["SELECT 1", "SELECT 2"]))
    assert answers == ["h2", "h2"] and client.host_index == 1
    assert hosts["h3"].statements == []


def test_a_statement_error_is_the_statements_not_the_hosts():
    hosts = {name: Host(name) for name in ("h1", "h2")}
    client = failover(hosts)
    hosts["h1"].fail_with = DatabaseError("Syntax error", code=62)
    with pytest.raises(DatabaseError, match="Syntax"):
        client.command("SELEC 1")
    assert client.host_index == 0 and hosts["h2"].statements == []
    hosts["h1"].fail_with = DatabaseError("Table is in readonly mode", code=242)
    assert client.command("INSERT") == "h2"


def test_when_every_host_fails_the_last_failure_is_raised():
    hosts = {name: Host(name) for name in ("h1", "h2")}
    client = failover(hosts, first=1)
    for host in hosts.values():
        host.up = False
    with pytest.raises(OperationalError, match="h1"):
        client.command("SELECT 1")


def test_no_live_host_at_start_is_storage_unavailable(free_port):
    """Real sockets: nothing listens on either port."""
    with pytest.raises(StorageUnavailable, match="unreachable"):
        open_client(f"http://default:@127.0.0.1:{free_port()},127.0.0.1:{free_port()}/")


def settings(**values: Any) -> LedgerSettings:
    return LedgerSettings(_env_file=None, **values)


def test_cluster_settings_are_checked_against_the_dsn():
    assert settings(clickhouse_dsn="chdb:///tmp/x").clickhouse_cluster is None
    assert settings(clickhouse_dsn="http://u:p@h1:8123,h2:8123", clickhouse_cluster="rsms").clickhouse_cluster == "rsms"
    assert settings(clickhouse_dsn="http://u:p@h1:8123", clickhouse_cluster="rsms").clickhouse_cluster == "rsms"
    with pytest.raises(InvalidSetting, match=r"RSMS_CLICKHOUSE_CLUSTER.*needs a ClickHouse server"):
        settings(clickhouse_dsn="chdb:///tmp/x", clickhouse_cluster="rsms")
    with pytest.raises(InvalidSetting, match="several hosts needs RSMS_CLICKHOUSE_CLUSTER"):
        settings(clickhouse_dsn="http://u:p@h1:8123,h2:8123")
    with pytest.raises(InvalidSetting, match="RSMS_CLICKHOUSE_CLUSTER"):
        settings(clickhouse_dsn="http://u:p@h1:8123", clickhouse_cluster="rsms'; DROP")
    with pytest.raises(InvalidSetting, match=r"RSMS_CLICKHOUSE_DSN.*DSN names each host"):
        settings(clickhouse_dsn="http://u:p@h1:8123,,h2:8123", clickhouse_cluster="rsms")
