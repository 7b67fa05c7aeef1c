"""The RabbitMQ adapter: everything that reaches under FastStream's or aio-pika's public API.

Each part below is self-contained; `tests/shared/test_rabbitmq_cluster.py` fails loudly if
an upgrade of FastStream or aio-pika breaks what it relies on.
"""

from __future__ import annotations

# --- a cluster: several nodes in RSMS_AMQP_URL, and moving on when one dies -------------
#
# `RSMS_AMQP_URL` may list the nodes of one cluster, comma-separated. A client talks to one
# node at a time; aio-pika's robust connection reconnects, but always to the URL it was
# made with. `ClusterConnection` is that robust connection with one change: every
# connection attempt goes to the next node of the list (aio-pika drops the old transport
# right before each attempt; that is the hook). Everything else (re-opening channels,
# re-declaring queues, re-consuming with the same consumer tags) stays aio-pika's.
#
# Readiness: a service is ready only while each of its consumers is attached on an open
# channel (`consumer_attached`) and its publishes are not being refused (`PublishHealth`).
import asyncio
import random
import socket
import time
from collections.abc import Awaitable, Callable, Collection, Coroutine, Sequence
from typing import Any
from urllib.parse import urlsplit

import aio_pika
import aiormq
from aio_pika.abc import AbstractConnection, AbstractQueue
from aio_pika.robust_connection import RobustConnection
from faststream import BaseMiddleware
from faststream.rabbit import RabbitBroker
from faststream.rabbit.subscriber import RabbitSubscriber
from pamqp.commands import Basic
from yarl import URL

from shared.log import get_logger

_log = get_logger(__name__)

RECONNECT_INTERVAL_SECONDS = 1.0
"""Pause between failed connection attempts (aio-pika's default is 5 s): with one node of
three dead, the next attempt goes to a live one, so sending resumes within seconds."""

STUCK_AFTER_SECONDS = 5.0
"""Publishes refused this long, without a success: the connection is dropped and made again."""

PUBLISH_REFUSED_WINDOW_SECONDS = 10.0
"""A refused publish (nack, timeout, closed channel) makes a service unready for this long,
or until a publish succeeds again."""


def parse_amqp_urls(value: str) -> list[str]:
    """`RSMS_AMQP_URL`: one AMQP URL, or several (the nodes of one cluster) comma-separated."""
    urls = [part.strip() for part in value.split(",") if part.strip()]
    if not urls:
        raise ValueError("no AMQP URL given")
    for url in urls:
        parts = urlsplit(url)
        if parts.scheme not in ("amqp", "amqps") or not parts.hostname:
            raise ValueError(f"not an AMQP URL (amqp://user:password@host:port/vhost): {_without_password(url)!r}")
        try:
            parts.port  # noqa: B018 - raises on a port that is not a number
        except ValueError as error:
            raise ValueError(f"bad port in {_without_password(url)!r}") from error
    return urls


def next_node(current: int, count: int) -> int:
    """The node after `current` (by index), round the list."""
    return (current + 1) % count


def first_node(count: int, chooser: random.Random | None = None) -> int:
    """Where a client starts: a random node, so the services spread over the cluster."""
    return (chooser or random).randrange(count)


def _without_password(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    return url.replace(f":{parts.password}@", ":******@", 1)


class ClusterConnection(RobustConnection):
    """A robust connection that tries the next node of its list on every attempt.

    aio-pika sets `transport = None` right before each connection attempt (and at
    `__init__` and `close`); this class moves `url` to the next node there. A node that
    dies drops the transport, so the reconnect goes to the next node; a failed attempt is
    followed by one to the node after it.
    """

    def __init__(self, url: URL, *args: Any, nodes: Sequence[str], start: int, **kwargs: Any) -> None:
        self._nodes = [URL(node) for node in nodes]
        super().__init__(url, *args, **kwargs)
        self._node = start - 1  # the first attempt moves on to `start`
        self.url = self._nodes[start]

    @property
    def transport(self) -> Any:
        return self._transport

    @transport.setter
    def transport(self, value: Any) -> None:
        if value is None and hasattr(self, "_node") and not self._close_called:
            self._node = next_node(self._node, len(self._nodes))
            self.url = self._nodes[self._node]
        self._transport = value

    @property
    def node_url(self) -> str:
        """The node this connection is on (or trying next), without its password."""
        return str(self.url.with_password(None) if self.url.password else self.url)


def cluster_broker(amqp_url: str, publishes: PublishHealth | None = None, **broker_options: Any) -> RabbitBroker:
    """A FastStream broker on the nodes `amqp_url` lists (one or several, comma-separated).

    FastStream hands its connection options to `aio_pika.connect_robust`; the connection
    class is one of them (not one of `RabbitBroker`'s parameters), set here. `publishes`:
    records every publish through the broker, and when they have been refused for
    `STUCK_AFTER_SECONDS` the connection is dropped, so it reconnects (to the next node)
    on fresh channels.
    """
    urls = parse_amqp_urls(amqp_url)
    broker_options.setdefault("reconnect_interval", RECONNECT_INTERVAL_SECONDS)
    if publishes is not None:
        broker_options["middlewares"] = [*broker_options.get("middlewares", ()), publishes.middleware()]
    broker = RabbitBroker(urls[0], **broker_options)
    broker._connection_kwargs["connection_class"] = _RotatingConnectionFactory(urls)
    if publishes is not None:
        publishes.on_stuck = lambda: _spawn(_reconnect_elsewhere(broker))
    return broker


_background: set[asyncio.Task[None]] = set()


def _spawn(work: Coroutine[Any, Any, None]) -> None:
    task = asyncio.get_running_loop().create_task(work)
    _background.add(task)
    task.add_done_callback(_background.discard)


async def _reconnect_elsewhere(broker: RabbitBroker) -> None:
    """Seen after a quorum queue's leader died: RabbitMQ 3.10 may go on nacking one
    connection's publishes for a minute. Dropping the connection makes aio-pika reconnect
    (to the next node) and re-open every channel; unacknowledged deliveries go back to
    their queues (redelivered; the consumers are idempotent)."""
    connection = broker._connection
    transport = getattr(connection, "transport", None)
    if transport is None:
        return
    _log.warning("publishes_refused_reconnecting", stuck_after_seconds=STUCK_AFTER_SECONDS)
    await transport.connection.close(ConnectionError("publishes refused: reconnecting"))


class _RotatingConnectionFactory:
    """A fresh `ClusterConnection` per `broker.connect()`, starting at a random node that
    answers. FastStream fails fast on a first attempt that fails, and a service retries
    (`connect_when_available`), but a CLI command would just fail: so the start node is
    probed first (a TCP connect, at most `PROBE_SECONDS` a node; a dead local node refuses
    at once). Reconnects later go round the nodes without probing."""

    def __init__(self, urls: Sequence[str]) -> None:
        self._urls = list(urls)

    def __call__(self, url: URL, *args: Any, **kwargs: Any) -> ClusterConnection:
        start = first_node(len(self._urls))
        for step in range(len(self._urls)):
            candidate = (start + step) % len(self._urls)
            if _answers(self._urls[candidate]):
                start = candidate
                break
        return ClusterConnection(url, *args, nodes=self._urls, start=start, **kwargs)


PROBE_SECONDS = 0.5


def _answers(url: str) -> bool:
    parts = urlsplit(url)
    port = parts.port or (5671 if parts.scheme == "amqps" else 5672)
    try:
        with socket.create_connection((parts.hostname or "localhost", port), PROBE_SECONDS):
            return True
    except OSError:
        return False


async def connect_to_any(amqp_url: str, connect_seconds: float = 10.0) -> AbstractConnection:
    """For the CLI: a connection to the first node (of those listed) that answers."""
    urls = parse_amqp_urls(amqp_url)
    errors: list[str] = []
    for url in urls:
        try:
            return await aio_pika.connect(url, timeout=connect_seconds)
        except (OSError, ConnectionError, aiormq.exceptions.AMQPError, TimeoutError) as error:
            errors.append(f"{_without_password(url)}: {type(error).__name__}")
    raise ConnectionError("no RabbitMQ node answers (" + "; ".join(errors) + ")")


def connected_node(broker: RabbitBroker) -> str | None:
    """The node URL (no password) the broker's connection is on, for logs and tests."""
    connection = broker._connection
    if isinstance(connection, ClusterConnection) and connection.connected.is_set():
        return connection.node_url
    return None


# --- consumers: attached or not ---------------------------------------------------------


def consumer_attached(queue: AbstractQueue | None, consumer_tag: str | None) -> bool:
    """The broker delivers to this consumer now: its channel is open and the channel has
    the tag (aiormq drops a tag the broker cancelled; a closed channel has none)."""
    if queue is None or consumer_tag is None:
        return False
    channel = queue.channel
    if channel.is_closed:
        return False
    underlay = getattr(channel, "_channel", None)
    if underlay is None:
        return False
    amqp_channel = underlay.channel
    return not amqp_channel.is_closed and consumer_tag in amqp_channel.consumers


def subscriber_attached(subscriber: RabbitSubscriber) -> bool:
    """A FastStream subscriber's consumer is attached (see `consumer_attached`)."""
    return consumer_attached(subscriber._queue_obj, subscriber._consumer_tag)


def missing_consumers(broker: RabbitBroker, paused: Collection[object] = ()) -> list[str]:
    """The queues of the broker's subscribers whose consumer is not attached; `paused`:
    subscribers stopped on purpose (the dispatcher's, while the provider is down)."""
    missing = []
    for subscriber in broker.subscribers:
        if subscriber in paused or not isinstance(subscriber, RabbitSubscriber):
            continue
        if not subscriber_attached(subscriber):
            missing.append(subscriber.queue.name)
    return missing


# --- publishes: being refused or not ----------------------------------------------------


def publishes_refused(
    last_failure: float | None, last_success: float | None, now: float, window: float = PUBLISH_REFUSED_WINDOW_SECONDS
) -> bool:
    """Refused: the latest publish failed, and not longer than `window` ago (after that,
    with no publish since, the service tries again rather than stay unready for ever)."""
    if last_failure is None or now - last_failure >= window:
        return False
    return last_success is None or last_success < last_failure


def refused_too_long(refused_since: float | None, now: float, limit: float = 5.0) -> bool:
    """Every publish since `refused_since` was refused, for `limit` seconds or more."""
    return refused_since is not None and now - refused_since >= limit


class PublishHealth:
    """Records how a service's publishes end; `refusing()` feeds its readiness, and
    `on_stuck` is called (once a period) when they have been refused for `stuck_after`."""

    def __init__(
        self,
        window: float = PUBLISH_REFUSED_WINDOW_SECONDS,
        clock: Callable[[], float] = time.monotonic,
        stuck_after: float = 0.0,
    ):
        self._window = window
        self._clock = clock
        self._stuck_after = stuck_after or STUCK_AFTER_SECONDS
        self.last_failure: float | None = None
        self.last_success: float | None = None
        self.refused_since: float | None = None
        self.on_stuck: Callable[[], None] | None = None

    def succeeded(self) -> None:
        self.last_success = self._clock()
        self.refused_since = None

    def failed(self) -> None:
        now = self.last_failure = self._clock()
        if self.refused_since is None:
            self.refused_since = now
        elif refused_too_long(self.refused_since, now, self._stuck_after) and self.on_stuck is not None:
            self.refused_since = now  # the next call only after another period
            self.on_stuck()

    def refusing(self) -> bool:
        return publishes_refused(self.last_failure, self.last_success, self._clock(), self._window)

    async def watch(self, publish: Awaitable[Any]) -> Any:
        """Await a publish, recording how it ended (a nack counts as refused)."""
        try:
            result = await publish
        except BaseException as error:  # a timeout cancels it: refused too
            self.failed()
            _log.warning("publish_refused", error=type(error).__name__, detail=str(error)[:200])
            raise
        if isinstance(result, Basic.Nack):
            self.failed()
            _log.warning("publish_refused", error="nack")
        else:
            self.succeeded()
        return result

    def middleware(self) -> Callable[..., BaseMiddleware]:
        """A FastStream broker middleware recording every publish through the broker."""
        health = self

        class _Watch(BaseMiddleware):
            async def publish_scope(self, call_next: Callable[[Any], Awaitable[Any]], cmd: Any) -> Any:
                return await health.watch(call_next(cmd))

        return _Watch


async def broker_ready(broker: RabbitBroker, publishes: PublishHealth, paused: Collection[object] = ()) -> bool:
    """Connected, every consumer attached (but those `paused`), publishes not refused."""
    try:
        connected = bool(await broker.ping(timeout=1.0))
    except (OSError, TimeoutError):
        connected = False
    return connected and not missing_consumers(broker, paused) and not publishes.refusing()
