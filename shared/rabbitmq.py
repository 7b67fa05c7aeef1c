"""The RabbitMQ adapter: everything that goes under FastStream's public API, and why.

The services are written in FastStream (subscribers, `broker.publish`, `declare_queue` /
`declare_exchange` and binding what they return, `RabbitMessage.ack/nack/body/headers`).
A few hot or delicate paths need what FastStream does not offer; each is one small,
named operation here, with the reason beside it, and nothing else in `services/` or
`shared/` touches a private attribute of FastStream, `message.raw_message`,
`broker.config`, the broker's context, an aio-pika queue's consumers or an aiormq
channel, or imports `aio_pika` / `aiormq` at all (exceptions included: they are
re-exported here). The operator commands in `cli/` (`rsms dlq`, `rsms webhooks`,
`rsms receipts`, `rsms migrate-topology`) may open a connection of their own with
aio-pika and use its public API (exceptions from `aio_pika.exceptions`): they do not
depend on FastStream's internals.

What each operation assumes of FastStream 0.7 / aio-pika / aiormq is checked by
`tests/shared/test_rabbitmq_adapter.py`, one test per assumption: after an upgrade, a
failing test there names what broke and which section of this file to fix. The
`faststream<0.8` pin in pyproject.toml stays until those tests pass on the new version.

Sections, in order: versions known to work; errors; the message being handled;
acknowledging on the delivery channel; confirmed raw publish; the direct reply-to
consumer; the raw consumer (the ledger's batched intake and the dispatcher's jobs, with
pause and resume, checked by `tests/shared/test_rabbitmq_raw_consumer.py`); a cluster: several nodes and moving on when
one dies, consumers attached or not, publishes refused or not (checked by
`tests/shared/test_rabbitmq_cluster.py`).
"""

from __future__ import annotations

import asyncio
import random
import socket
import time
from collections.abc import Awaitable, Callable, Collection, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import aio_pika
import aiormq
from aio_pika.abc import AbstractConnection, AbstractIncomingMessage, AbstractQueue, AbstractRobustChannel
from aio_pika.exceptions import AMQPError, ChannelInvalidStateError, ChannelPreconditionFailed
from aio_pika.robust_connection import RobustConnection
from aiormq import spec
from faststream import BaseMiddleware
from faststream.rabbit import Channel, RabbitBroker
from faststream.rabbit.message import RabbitMessage
from faststream.rabbit.schemas import RABBIT_REPLY
from faststream.rabbit.subscriber import RabbitSubscriber
from pamqp.commands import Basic
from yarl import URL

from shared.log import get_logger, without_passwords

_log = get_logger(__name__)

__all__ = [
    "DIRECT_REPLY_TO",
    "KNOWN_TO_WORK",
    "AMQPError",
    "ChannelInvalidStateError",
    "ChannelPreconditionFailed",
    "ClusterConnection",
    "ConfirmedPublisher",
    "DeliveryChannel",
    "PublishHealth",
    "RawConsumer",
    "RawDelivery",
    "ack_on_channel",
    "broker_ready",
    "channel_is_closed",
    "cluster_broker",
    "connect_to_any",
    "connected_node",
    "consume_direct_replies",
    "consume_raw",
    "consumer_attached",
    "current_message",
    "first_node",
    "hand_back",
    "missing_consumers",
    "next_node",
    "parse_amqp_urls",
    "publishes_refused",
    "refused_too_long",
    "subscriber_attached",
]

# --- versions known to work ---------------------------------------------------------

KNOWN_TO_WORK: dict[str, tuple[str, str]] = {
    "faststream": ("0.7.8", "0.8"),
    "aio-pika": ("9.4", "11"),
    "aiormq": ("6.8", "8"),
}
"""Distribution: (lowest tested, first untested) release. The adapter's tests fail when
an installed version is outside: run them on the new version, fix what they name, then
widen the range (and the pin in pyproject.toml)."""


# --- errors -------------------------------------------------------------------------
# aio-pika re-exports aiormq's exceptions: one import for every caller.
#
#   AMQPError                  the broker or the connection failed under a call
#   ChannelInvalidStateError   the channel is closed (a RuntimeError: e.g. mid-reconnect)
#   ChannelPreconditionFailed  a queue or exchange exists with other arguments


# --- the message being handled ------------------------------------------------------


def current_message(broker: RabbitBroker) -> RabbitMessage:
    """The message the running handler was called with.

    Handlers of brokers built with `apply_types=False` (no FastDepends: it would resolve
    the message in a worker thread for every job) take only the body; FastStream keeps
    the message in its context under "message" for the duration of the call.
    """
    message: RabbitMessage = broker.context.get_local("message")
    return message


# --- acknowledging on the delivery channel ------------------------------------------
# A multiple-ack (`basic.ack` with `multiple=True`) settles every delivery on a channel
# up to a tag in one frame: FastStream acks one message at a time, through aio-pika's
# message, which also refuses to ack twice. `services/dispatcher/acknowledger.py` decides
# which frames are safe; these are the frames. The delivery's channel and tag are
# `RawDelivery.channel` / `.delivery_tag` (the raw consumer's).

DeliveryChannel = aiormq.abc.AbstractChannel
"""The AMQP channel a message was delivered on: its delivery tags count 1, 2, 3..."""


def channel_is_closed(channel: DeliveryChannel) -> bool:
    return bool(channel.is_closed)


async def ack_on_channel(channel: DeliveryChannel, tag: int, *, multiple: bool) -> None:
    """One `basic.ack` frame; returns once it is written to the socket. Raises
    ChannelInvalidStateError on a closed channel (the broker requeues what it did not
    get acked)."""
    await channel.basic_ack(tag, multiple=multiple)


# --- confirmed raw publish ----------------------------------------------------------

JSON = "application/json"
PERSISTENT = 2


class ConfirmedPublisher:
    """Persistent, mandatory publishes, each returning once the broker confirmed it (a
    nack raises aiormq's DeliveryError), straight on the AMQP channel of a confirm channel
    of their own on the broker's robust connection:

    - FastStream's publish path (middlewares, codec, exchange lookup per call) cost more
      CPU per job attempt than the publish itself;
    - aio-pika's `Exchange.publish` waits for the socket to drain while holding the
      channel's publish lock, so concurrent publishes left one per event-loop turn. Here
      the lock is released once the frame is queued (`wait=False`), concurrent publishes
      leave together, and the broker confirms them together.
    """

    def __init__(
        self, broker: RabbitBroker, timeout_seconds: float, *, returns_raise: bool = False, fail_fast: bool = False
    ) -> None:
        self._broker = broker
        self._timeout = timeout_seconds
        # Confirms on, on the broker's robust connection, but not the channel messages are
        # delivered on. `returns_raise`: a message no queue took (returned, then confirmed)
        # raises aiormq's PublishError instead of counting as published.
        self._spec = Channel(publisher_confirms=True, on_return_raises=returns_raise)
        # While the connection is down the robust channel waits for it to come back.
        # `fail_fast`: raise ChannelInvalidStateError at once instead, for a caller with a
        # client waiting (ingest answers the contract's error, as FastStream's publish did).
        self._fail_fast = fail_fast
        self._channel: AbstractRobustChannel | None = None

    async def open(self) -> None:
        """Opens the channel; call once the broker is connected."""
        self._channel = await self._broker.config.channel_manager.get_channel(self._spec)

    async def publish(
        self,
        body: bytes,
        *,
        exchange: str = "",
        routing_key: str = "",
        message_id: str | None = None,
        content_type: str = JSON,
        message_type: str | None = None,
    ) -> None:
        if self._channel is None:
            raise RuntimeError("ConfirmedPublisher.open() was not called")
        if self._fail_fast and self._channel.is_closed:
            raise ChannelInvalidStateError("the connection to RabbitMQ is down")
        # Asked each time: after a reconnect the robust channel has a new one underneath.
        channel: Any = await self._channel.get_underlay_channel()
        await channel.basic_publish(
            body,
            exchange=exchange,
            routing_key=routing_key,
            properties=spec.Basic.Properties(
                content_type=content_type,
                delivery_mode=PERSISTENT,
                message_id=message_id,
                message_type=message_type,
            ),
            mandatory=True,
            timeout=self._timeout,
            wait=False,  # the confirm is awaited; the socket drain need not hold the lock
        )


# --- the direct reply-to consumer ---------------------------------------------------
# Request/reply where many requests wait at once: FastStream's `broker.request` holds a
# lock for the whole round trip, so one slow request would hold up every other of the
# process. Instead replies come back on RabbitMQ's direct reply-to pseudo-queue through
# one consumer FastStream does not know about, and each finds its caller by correlation
# id. Direct reply-to wants the consumer on the channel the requests are published on:
# `broker.declare_queue` and `broker.publish` both use the broker's default channel.

DIRECT_REPLY_TO = RABBIT_REPLY.name
"""The `reply_to` of a request whose reply `consume_direct_replies` receives."""


async def consume_direct_replies(broker: RabbitBroker, on_reply: Callable[[str, bytes], None]) -> RawConsumer:
    """Starts consuming the replies (no ack: the pseudo-queue has none); `on_reply` gets
    each one's correlation id ('' when it has none) and body. Call once per broker. The
    consumer answered tells readiness whether it is attached (`consumer_attached`)."""
    replies = await broker.declare_queue(RABBIT_REPLY)

    async def deliver(message: AbstractIncomingMessage) -> None:
        on_reply(message.correlation_id or "", message.body)

    return RawConsumer(replies, await replies.consume(deliver, no_ack=True), deliver, no_ack=True)


# --- the raw consumer ---------------------------------------------------------------
# A subscriber's handler runs once per delivery through FastStream's whole per-message
# path (parser, decoder, middlewares, context scopes, logging, the ack policy, and with
# FastDepends a worker-thread hop to resolve `message: RabbitMessage`): at a few thousand
# small events a second that was most of the ledger's CPU, ten times its inserts, and a
# third of the dispatcher's per single-recipient job. Neither needs any of it. So this consumes
# a queue with aio-pika directly, on a channel of FastStream's robust connection (which
# aio-pika re-opens after a connection loss, re-consuming the queue with the same
# callback), and hands each delivery, unparsed, to a plain coroutine function. The
# caller settles every delivery itself: `ack_on_channel` (one frame for many with
# `multiple`) or `hand_back`. `RawConsumer.pause` / `resume` stop and restart deliveries
# (FastStream 0.7 has no pause: `subscriber.stop()` leaves what arrives meanwhile
# unacknowledged), for the dispatcher while its provider refuses the account.

RawDelivery = AbstractIncomingMessage
"""One delivery as aio-pika gives it: `.body` (bytes), `.delivery_tag` (int, counting
1, 2, 3... on its channel), `.channel` (the `DeliveryChannel` it came on)."""


@dataclass
class RawConsumer:
    queue: AbstractQueue
    consumer_tag: str | None
    """None while paused (or cancelled)."""
    on_delivery: Callable[[RawDelivery], Awaitable[None]]
    no_ack: bool = False

    async def cancel(self) -> None:
        """No more deliveries (those unsettled stay with the caller to settle)."""
        if self.consumer_tag is not None and not self.queue.channel.is_closed:
            await self.queue.cancel(self.consumer_tag)
        self.consumer_tag = None

    async def pause(self) -> bool:
        """No more deliveries until `resume`; False when it was paused already. Deliveries
        the broker sent before it took the cancel still arrive (the caller hands them back).
        aio-pika's robust queue forgets the consumer before it sends the cancel, so a
        reconnect does not consume again. On a closed channel (mid-reconnect) this raises
        (ChannelInvalidStateError, a RuntimeError): call again, which cancels the tag on
        the channel it may have been restored on."""
        if self.consumer_tag is None:
            return False
        await self.queue.cancel(self.consumer_tag)
        self.consumer_tag = None
        return True

    async def resume(self) -> bool:
        """Deliveries again, to the same callback, after `pause`; False when not paused.
        Raises on a closed channel (mid-reconnect): call again."""
        if self.consumer_tag is not None:
            return False
        self.consumer_tag = await self.queue.consume(self.on_delivery, no_ack=self.no_ack)
        return True

    def attached(self) -> bool:
        return consumer_attached(self.queue, self.consumer_tag)


async def consume_raw(
    broker: RabbitBroker,
    queue_name: str,
    channel: Channel,
    on_delivery: Callable[[RawDelivery], Awaitable[None]],
    *,
    outlive_channel: bool = False,
) -> RawConsumer:
    """Starts consuming `queue_name` (declared already) with manual acks; `on_delivery`
    runs for each delivery, a task each (aiormq's and aio-pika's way), so it may wait (the
    dispatcher handles the job in it) or return at once (the ledger collects a batch); the
    caller settles every delivery itself. aiormq cancels the tasks still running when
    their channel closes (as it did under FastStream's subscribers).

    `outlive_channel`: `on_delivery` runs to its end even when the channel closes (a broker
    restart, a dropped connection), in a task of its own that aiormq does not cancel; only
    its settling (ack, nack) then fails, and the broker redelivers the message. For work
    that must not stop halfway: the dispatcher cancelled between a submit to the SMSC and
    the record of its outcome left the recipient "outcome unknown", and the redelivery
    held it for an operator.

    Consumers given the same `channel` object share one AMQP channel (FastStream keeps one
    per `Channel` object, not per equal settings), so their deliveries share one run of
    delivery tags; `channel.prefetch_count` bounds each consumer's unsettled deliveries.
    """
    if outlive_channel:
        on_delivery = _outliving_its_channel(on_delivery)
    # Not public in FastStream 0.7: its channel cache on the broker's robust connection.
    robust_channel = await broker.config.channel_manager.get_channel(channel)
    # Passive: checks the queue exists without restating its arguments. A robust queue:
    # declared again (passively) and consumed again with the same callback after a
    # reconnect.
    queue = await robust_channel.declare_queue(queue_name, passive=True)
    tag = await queue.consume(on_delivery, no_ack=False)
    return RawConsumer(queue, tag, on_delivery)


def _outliving_its_channel(
    on_delivery: Callable[[RawDelivery], Awaitable[None]],
) -> Callable[[RawDelivery], Awaitable[None]]:
    # The work in flight: the event loop keeps only weak references to tasks.
    in_flight: set[asyncio.Future[None]] = set()

    async def deliver(message: RawDelivery) -> None:
        work = asyncio.ensure_future(on_delivery(message))
        in_flight.add(work)
        work.add_done_callback(in_flight.discard)
        # aiormq cancels this task with its channel (aiormq.base.FutureStore.reject_all):
        # the shield keeps `work` going.
        await asyncio.shield(work)

    return deliver


async def hand_back(delivery: RawDelivery) -> None:
    """Returns the delivery to its queue (`basic.nack`, requeue) for another try."""
    await delivery.nack(requeue=True)


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
            raise ValueError(f"not an AMQP URL (amqp://user:password@host:port/vhost): {without_passwords(url)!r}")
        try:
            parts.port  # noqa: B018 - raises on a port that is not a number
        except ValueError as error:
            raise ValueError(f"bad port in {without_passwords(url)!r}") from error
    return urls


def next_node(current: int, count: int) -> int:
    """The node after `current` (by index), round the list."""
    return (current + 1) % count


def first_node(count: int, chooser: random.Random | None = None) -> int:
    """Where a client starts: a random node, so the services spread over the cluster."""
    return (chooser or random).randrange(count)


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
            errors.append(f"{without_passwords(url)}: {type(error).__name__}")
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
