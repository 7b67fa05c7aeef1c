"""ClickHouse DSNs naming several hosts, and the order the ledger tries them in.

`http://user:pass@h1:8123,h2:8123/db?opt=1` names the replicas (or shards) of one cluster;
each host is reached with the same scheme, credentials, path and options. clickhouse-connect
takes one host per client, so the DSN is split into one single-host DSN per host
(`http://user:pass@h1:8123/db?opt=1`, ...). A `chdb://` DSN is a directory, not a host
list, and passes through whole; so does any DSN with one host.
"""

from __future__ import annotations


def _split(dsn: str) -> tuple[str, str, list[str], str]:
    """(scheme://, userinfo@, hosts, rest from the path on) of a server DSN."""
    scheme, separator, remainder = dsn.partition("://")
    if not separator:
        raise ValueError("a ClickHouse DSN starts with a scheme: http://, https:// or clickhouse://")
    end = min((i for i in (remainder.find(c) for c in "/?#") if i >= 0), default=len(remainder))
    authority, rest = remainder[:end], remainder[end:]
    # The last @ ends the credentials: a password may contain one (URL-quoted or not).
    userinfo, at, host_list = authority.rpartition("@")
    hosts = host_list.split(",")
    if any(not host.strip() for host in hosts):
        raise ValueError("a ClickHouse DSN names each host: http://user:pass@h1:8123,h2:8123/db")
    return f"{scheme}://", f"{userinfo}{at}", [host.strip() for host in hosts], rest


def dsn_hosts(dsn: str) -> list[str]:
    """The `host[:port]` entries of a server DSN; a chDB DSN has none."""
    if dsn.startswith("chdb:"):
        return []
    return _split(dsn)[2]


def host_dsns(dsn: str) -> list[str]:
    """One single-host DSN per host of `dsn`, in the order written; `[dsn]` for chDB or one host."""
    if dsn.startswith("chdb:"):
        return [dsn]
    scheme, userinfo, hosts, rest = _split(dsn)
    return [f"{scheme}{userinfo}{host}{rest}" for host in hosts]


def next_host(current: int, count: int) -> int:
    """The host to try after host `current` of `count` failed: the next one, wrapping round.
    A ledger starts at a host of its own choosing (several ledgers spread over the
    replicas) and moves on from it only when it fails."""
    if count < 1:
        raise ValueError("no hosts to try")
    return (current + 1) % count
