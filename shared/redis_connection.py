"""The Redis adapter: the one place a Redis client is built, for every service and command.

`RSMS_REDIS_URL` takes four forms:

    redis://[user:pass@]host:port[/db]              one server (rediss:// with TLS)
    redis+sentinel://[user:pass@]host:port[,host:port…]/service[/db]
                                                    the primary Sentinel names `service`;
                                                    after a failover the client asks the
                                                    sentinels again
    redis+cluster://[user:pass@]host:port[,host:port…]
                                                    a Redis Cluster (any nodes of it; the
                                                    client learns the rest); db 0 only
    (rediss+sentinel:// and rediss+cluster:// with TLS)

The user and password are those of the data nodes; sentinels are asked without them.

In a cluster every script and transaction must keep its keys in one hash slot: the key
names carry hash tags (`{…}`) for that, and `tests/test_redis_slots.py` checks them.

Writes that must survive a failover (Idempotency-Key claims, send markers) go through
`write_confirmed`: the write, then `WAIT numreplicas timeout` on the same connection, and
`NotConfirmed` unless enough replicas have it (see the README: Redis with Sentinel or
Cluster).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, TypeAlias
from urllib.parse import unquote, urlsplit

from redis.asyncio import Redis
from redis.asyncio.cluster import ClusterNode, PipelineCommand, RedisCluster
from redis.asyncio.sentinel import Sentinel
from redis.exceptions import NoScriptError, RedisError

RedisClient: TypeAlias = Redis | RedisCluster
"""What every Redis user is given: a client of one server (plain or through Sentinel) or of
a cluster. Both have the same commands; only `write_confirmed` tells them apart."""

Mode = Literal["server", "sentinel", "cluster"]
_SCHEMES: dict[str, tuple[Mode, bool]] = {
    "redis": ("server", False),
    "rediss": ("server", True),
    "redis+sentinel": ("sentinel", False),
    "rediss+sentinel": ("sentinel", True),
    "redis+cluster": ("cluster", False),
    "rediss+cluster": ("cluster", True),
}
DEFAULT_PORT = 6379
DEFAULT_SENTINEL_PORT = 26379


@dataclass(frozen=True, slots=True)
class RedisTarget:
    """What `RSMS_REDIS_URL` names."""

    mode: Mode
    hosts: tuple[tuple[str, int], ...]
    """The server; the sentinels; or the cluster nodes to start from."""
    db: int = 0
    service: str = ""
    """The Sentinel service name of the primary (sentinel mode only)."""
    username: str | None = None
    password: str | None = None
    tls: bool = False


def parse_redis_url(url: str) -> RedisTarget:
    """Raises ValueError with a message fit for the operator when `url` is not one of the forms."""
    scheme, separator, rest = url.partition("://")
    if not separator or scheme.lower() not in _SCHEMES:
        raise ValueError(f"unsupported Redis URL scheme {scheme!r}: use one of {', '.join(_SCHEMES)}")
    mode, tls = _SCHEMES[scheme.lower()]
    netloc, _, path = rest.partition("/")
    path = path.split("?", 1)[0]
    credentials, at, host_list = netloc.rpartition("@")
    username: str | None = None
    password: str | None = None
    if at:
        user, colon, secret = credentials.partition(":")
        username = unquote(user) or None
        password = unquote(secret) if colon else None
    default_port = DEFAULT_SENTINEL_PORT if mode == "sentinel" else DEFAULT_PORT
    hosts = tuple(_host_port(part, default_port) for part in host_list.split(","))
    parts = [p for p in path.split("/") if p]
    service = ""
    if mode == "sentinel":
        if not parts:
            raise ValueError("a redis+sentinel:// URL names the primary's service: redis+sentinel://host:port/mymaster")
        service, parts = unquote(parts[0]), parts[1:]
    if len(parts) > 1:
        raise ValueError(f"unexpected path {path!r} in the Redis URL")
    db = _db(parts[0]) if parts else 0
    if mode == "server" and len(hosts) > 1:
        raise ValueError("a redis:// URL names one server; several hosts need redis+sentinel:// or redis+cluster://")
    if mode == "cluster" and db != 0:
        raise ValueError(f"a Redis Cluster has only database 0 (the URL asks for {db}): drop the /{db}")
    return RedisTarget(mode, hosts, db, service, username, password, tls)


def _host_port(part: str, default_port: int) -> tuple[str, int]:
    if not part:
        raise ValueError("a Redis URL needs a host")
    split = urlsplit(f"//{part}")
    try:
        port = split.port
    except ValueError:
        raise ValueError(f"bad port in {part!r} of the Redis URL") from None
    if not split.hostname:
        raise ValueError(f"no host in {part!r} of the Redis URL")
    return split.hostname, port if port is not None else default_port


def _db(text: str) -> int:
    if not text.isdigit():
        raise ValueError(f"the Redis database must be a number, not {text!r}")
    return int(text)


def connect(
    url: str,
    *,
    decode_responses: bool = False,
    socket_timeout: float | None = None,
    socket_connect_timeout: float | None = None,
) -> RedisClient:
    """A client for `url` (not connected yet: the first command connects)."""
    target = parse_redis_url(url)
    common: dict[str, Any] = {
        "decode_responses": decode_responses,
        "socket_timeout": socket_timeout,
        "socket_connect_timeout": socket_connect_timeout,
        "username": target.username,
        "password": target.password,
    }
    if target.mode == "cluster":
        return RedisCluster(
            startup_nodes=[ClusterNode(host, port) for host, port in target.hosts],
            ssl=target.tls,
            **common,
        )
    if target.mode == "sentinel":
        sentinel = Sentinel(
            list(target.hosts),
            sentinel_kwargs={"socket_timeout": socket_timeout, "socket_connect_timeout": socket_connect_timeout},
            ssl=target.tls,
            **common,
        )
        primary: Redis = sentinel.master_for(target.service, redis_class=Redis, db=target.db)
        return primary
    # As from_url has always built it: a failed command fails at once (no retries with
    # backoff, which Redis() adds by default), so a job goes back to the queue at once.
    # The URL carries the credentials, the database and TLS.
    plain: Redis = Redis.from_url(
        url,
        decode_responses=decode_responses,
        socket_timeout=socket_timeout,
        socket_connect_timeout=socket_connect_timeout,
    )
    return plain


# --- writes a replica has confirmed ----------------------------------------------------


@dataclass(frozen=True, slots=True)
class Durability:
    """How many replicas must have a write before it counts (0: the primary's word is enough)."""

    replicas: int = 0
    timeout_ms: int = 1000


PRIMARY_ONLY = Durability()
"""No replica asked for: one Redis, as on a developer's machine."""


class NotConfirmed(RedisError):
    """The write reached the primary but not `Durability.replicas` replicas in time: a
    failover now could lose it, so the caller must act as if it was not stored."""

    def __init__(self, message: str, replies: list[Any]) -> None:
        super().__init__(message)
        self.replies = replies
        """The commands' replies: what the primary did (to undo only what was done)."""


def confirmed(acknowledged: int, durability: Durability) -> bool:
    """Whether WAIT's answer (replicas that have the write) meets the setting."""
    return acknowledged >= durability.replicas


async def write_confirmed(
    client: RedisClient, key: str, commands: Sequence[Sequence[Any]], durability: Durability
) -> list[Any]:
    """Run `commands` (raw, e.g. ("SET", name, value, "NX")) on the node holding `key`, then
    WAIT on the same connection (WAIT counts the connection's own writes); answers the
    commands' replies. Raises NotConfirmed when fewer replicas than asked have them (the
    writes stay on the primary: undo them if that matters), RedisError when Redis fails.
    """
    wait = ("WAIT", durability.replicas, durability.timeout_ms) if durability.replicas else None
    if isinstance(client, RedisCluster):
        replies = await _on_node_of(client, key, [*commands, *([wait] if wait else [])])
    elif wait is None and len(commands) == 1:
        # One command and nothing to wait for (a single Redis, every send marker call):
        # straight on a pooled connection. A pipeline object per call was most of the
        # cost of a marker script call from Python.
        replies = [await client.execute_command(*commands[0])]  # type: ignore[no-untyped-call]
    else:
        async with client.pipeline(transaction=False) as pipe:
            for command in commands:
                pipe.execute_command(*command)
            if wait:
                pipe.execute_command(*wait)
            replies = list(await pipe.execute())
    if wait:
        acknowledged = int(replies.pop())
        if not confirmed(acknowledged, durability):
            raise NotConfirmed(f"{acknowledged} of {durability.replicas} replicas confirmed the write", replies)
    return replies


async def _on_node_of(client: RedisCluster, key: str, commands: Sequence[Sequence[Any]]) -> list[Any]:
    """One connection to the primary of `key`'s slot: a cluster pipeline would route the
    keyless WAIT elsewhere. A moved slot or a dead node makes the client learn the
    cluster's map again, so the caller's retry goes to the new primary."""
    await client.initialize()
    node = client.get_node_from_key(key)
    if node is None:
        await client.nodes_manager.initialize()
        raise RedisError("no node holds the slot of a key (cluster map incomplete); retry")
    queued = [PipelineCommand(i, *command) for i, command in enumerate(commands)]
    try:
        await node.execute_pipeline(queued)
    except (RedisError, OSError):
        await client.nodes_manager.initialize()
        raise
    for command in queued:
        if isinstance(command.result, Exception):
            if isinstance(command.result, (RedisError, OSError)):
                await client.nodes_manager.initialize()
            raise command.result
    return [command.result for command in queued]


class ConfirmedScript:
    """A Lua script whose writes `write_confirmed` waits for (as redis-py's `Script` runs
    one, but with WAIT on the same connection). Redis loses its script cache on a restart
    and a promoted replica may never have loaded it: on NOSCRIPT the script (which then
    did not run) is loaded on the node of its first key and called once more."""

    def __init__(self, client: RedisClient, script: str, durability: Durability) -> None:
        self._client = client
        self._script = script
        self._sha = hashlib.sha1(script.encode(), usedforsecurity=False).hexdigest()  # Redis names scripts so
        self.durability = durability

    async def __call__(self, keys: Sequence[str], args: Sequence[Any]) -> Any:
        call = ("EVALSHA", self._sha, len(keys), *keys, *args)
        try:
            (answer,) = await write_confirmed(self._client, keys[0], [call], self.durability)
        except NoScriptError:
            _sha, answer = await write_confirmed(
                self._client, keys[0], [("SCRIPT", "LOAD", self._script), call], self.durability
            )
        return answer
