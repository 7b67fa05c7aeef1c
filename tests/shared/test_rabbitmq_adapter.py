"""The RabbitMQ adapter (`shared/rabbitmq.py`): each operation against the real RabbitMQ
(a vhost of the test's own), then the upgrade guard: one test per assumption the adapter
makes of FastStream, aio-pika and aiormq, failing with a message that says what broke and
where to fix it."""

from __future__ import annotations

import asyncio
import inspect
import json
import re
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from importlib.metadata import version
from pathlib import Path

import aio_pika
import aio_pika.exceptions
import aiormq
import aiormq.exceptions
import pytest
from faststream import AckPolicy
from faststream.rabbit import Channel, ExchangeType, RabbitBroker, RabbitExchange, RabbitQueue
from faststream.rabbit.message import RabbitMessage
from faststream.rabbit.subscriber import RabbitSubscriber
from packaging.version import Version
from pamqp.commands import Basic

from shared import rabbitmq
from tests.support.queues import depth, drain

WAIT_SECONDS = 20.0  # generous: a busy 2-core machine


def broke(what: str, section: str) -> str:
    return (
        f"RabbitMQ adapter assumption broken: {what}. A FastStream / aio-pika / aiormq upgrade changed it: "
        f"fix shared/rabbitmq.py, section '{section}', before widening KNOWN_TO_WORK and the pin in pyproject.toml."
    )


async def eventually(check: Callable[[], Awaitable[bool]], what: str) -> None:
    deadline = asyncio.get_running_loop().time() + WAIT_SECONDS
    while not await check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"not within {WAIT_SECONDS:g} s: {what}")
        await asyncio.sleep(0.05)


def new_broker(amqp_url: str, **options: object) -> RabbitBroker:
    # As the services build theirs: the handlers take the raw body, nothing is injected.
    return RabbitBroker(amqp_url, logger=None, apply_types=False, **options)  # type: ignore[arg-type]


@asynccontextmanager
async def running(broker: RabbitBroker) -> AsyncIterator[RabbitBroker]:
    await broker.start()
    try:
        yield broker
    finally:
        await broker.stop()


async def keep_body(message: object) -> bytes:
    return message.body  # type: ignore[attr-defined,no-any-return]


def manual_subscriber(broker: RabbitBroker, queue: str) -> RabbitSubscriber:
    return broker.subscriber(
        RabbitQueue(queue, durable=True), ack_policy=AckPolicy.MANUAL, decoder=keep_body, no_reply=True
    )


async def publish(broker: RabbitBroker, queue: str, *bodies: bytes) -> None:
    for body in bodies:
        answer = await broker.publish(body, queue=queue, persist=True, mandatory=True)
        assert isinstance(answer, Basic.Ack)


# --- the operations -------------------------------------------------------------------


async def test_the_handler_finds_its_message_and_the_redelivered_flag(amqp_url: str) -> None:
    broker = new_broker(amqp_url)
    subscriber = manual_subscriber(broker, "adapter.current")
    seen: list[tuple[bytes, bytes, bool]] = []

    @subscriber
    async def handle(body: bytes) -> None:
        message = rabbitmq.current_message(broker)
        seen.append((body, message.body, message.raw_message.redelivered))
        if len(seen) == 1:
            await message.nack(requeue=True)  # back to the queue: delivered again, flagged
        else:
            await message.ack()

    async with running(broker):
        await publish(broker, "adapter.current", b"job-1")

        async def twice() -> bool:
            return len(seen) == 2

        await eventually(twice, "the job delivered twice")
    assert seen == [(b"job-1", b"job-1", False), (b"job-1", b"job-1", True)]


async def test_a_multiple_ack_settles_every_delivery_up_to_its_tag_and_no_further(amqp_url: str) -> None:
    broker = new_broker(amqp_url, default_channel=Channel(prefetch_count=10))
    subscriber = manual_subscriber(broker, "adapter.acks")
    held: list[RabbitMessage] = []

    @subscriber
    async def handle(body: bytes) -> None:
        held.append(rabbitmq.current_message(broker))  # not settled here: the test does

    async with running(broker):
        await publish(broker, "adapter.acks", *(json.dumps(f"m{i}").encode() for i in range(1, 6)))

        async def five_held() -> bool:
            return len(held) == 5

        await eventually(five_held, "five deliveries held unacknowledged")
        channel = held[0].raw_message.channel
        assert all(m.raw_message.channel is channel for m in held)
        assert [m.raw_message.delivery_tag for m in held] == [1, 2, 3, 4, 5]
        assert not rabbitmq.channel_is_closed(channel)
        await rabbitmq.ack_on_channel(channel, 3, multiple=True)  # m1..m3 in one frame
        await rabbitmq.ack_on_channel(channel, 5, multiple=False)  # m5 alone; m4 stays out
    # The connection closed: what was not acked is back in the queue, and only that.
    assert rabbitmq.channel_is_closed(channel)
    with pytest.raises(rabbitmq.ChannelInvalidStateError):
        await rabbitmq.ack_on_channel(channel, 4, multiple=False)
    left = await drain(amqp_url, "adapter.acks", expect=1)
    assert [m["body"] for m in left] == ["m4"]
    assert await depth(amqp_url, "adapter.acks") == 0


async def test_confirmed_publish_is_persistent_and_reaches_queue_and_exchange(amqp_url: str) -> None:
    broker = new_broker(amqp_url)
    publisher = rabbitmq.ConfirmedPublisher(broker, timeout_seconds=10)
    with pytest.raises(RuntimeError, match="open"):
        await publisher.publish(b"{}", routing_key="adapter.raw")
    async with running(broker):
        await broker.declare_queue(RabbitQueue("adapter.raw", durable=True))
        fanout = await broker.declare_exchange(RabbitExchange("adapter.fanout", type=ExchangeType.FANOUT, durable=True))
        bound = await broker.declare_queue(RabbitQueue("adapter.bound", durable=True))
        await bound.bind(fanout)
        await publisher.open()
        # Concurrent publishes (they leave together) each wait for their own confirm.
        await asyncio.gather(
            *(publisher.publish(json.dumps({"n": n}).encode(), routing_key="adapter.raw") for n in range(20)),
            publisher.publish(
                b'{"to": "exchange"}', exchange="adapter.fanout", message_id="event-1", message_type="Event/1"
            ),
        )
    direct = await drain(amqp_url, "adapter.raw", expect=20)
    assert sorted(m["body"]["n"] for m in direct) == list(range(20))
    assert {(m["properties"]["delivery_mode"], m["properties"]["content_type"]) for m in direct} == {
        (2, "application/json")
    }
    (routed,) = await drain(amqp_url, "adapter.bound", expect=1)
    assert routed["body"] == {"to": "exchange"} and routed["properties"]["message_id"] == "event-1"
    assert routed["properties"]["type"] == "Event/1"


async def test_a_confirmed_publish_no_queue_took_raises_only_where_returns_raise(amqp_url: str) -> None:
    """Ingest's jobs must not count as queued when the broker returned them (a fanout with
    no queue bound): the return arrives before the confirm and must fail the publish."""
    broker = new_broker(amqp_url)
    strict = rabbitmq.ConfirmedPublisher(broker, timeout_seconds=10, returns_raise=True)
    lenient = rabbitmq.ConfirmedPublisher(broker, timeout_seconds=10)
    async with running(broker):
        await broker.declare_exchange(RabbitExchange("adapter.nowhere", type=ExchangeType.FANOUT, durable=True))
        await strict.open()
        await lenient.open()
        with pytest.raises(aiormq.exceptions.PublishError):
            await strict.publish(b"{}", exchange="adapter.nowhere")
        await lenient.publish(b"{}", exchange="adapter.nowhere")  # returned, and no error
        # The channel stays usable after a return.
        await broker.declare_queue(RabbitQueue("adapter.after-return", durable=True))
        await strict.publish(b'{"ok": 1}', routing_key="adapter.after-return")
    (after,) = await drain(amqp_url, "adapter.after-return", expect=1)
    assert after["body"] == {"ok": 1}


async def test_replies_come_back_to_the_direct_reply_consumer_by_correlation_id(amqp_url: str) -> None:
    responder = new_broker(amqp_url)

    @responder.subscriber(RabbitQueue("adapter.questions", durable=True), decoder=keep_body)
    async def answer(body: bytes) -> bytes:
        return b"answer to " + body  # FastStream replies to reply_to, with the correlation id

    asker = new_broker(amqp_url)
    replies: dict[str, bytes] = {}
    async with running(responder), running(asker):
        await rabbitmq.consume_direct_replies(
            asker, lambda correlation_id, body: replies.update({correlation_id: body})
        )
        ids = [uuid.uuid4().hex for _ in range(3)]
        for n, correlation_id in enumerate(ids):
            await asker.publish(
                f"q{n}".encode(),
                queue="adapter.questions",
                reply_to=rabbitmq.DIRECT_REPLY_TO,
                correlation_id=correlation_id,
            )

        async def all_answered() -> bool:
            return len(replies) == 3

        await eventually(all_answered, "three replies")
    assert replies == {correlation_id: f"answer to q{n}".encode() for n, correlation_id in enumerate(ids)}


# --- the upgrade guard: one test per assumption ------------------------------------


@pytest.mark.parametrize("distribution", sorted(rabbitmq.KNOWN_TO_WORK))
def test_installed_versions_are_ones_the_adapter_is_known_to_work_with(distribution: str) -> None:
    low, high = rabbitmq.KNOWN_TO_WORK[distribution]
    installed = version(distribution)
    assert Version(low) <= Version(installed) < Version(high), broke(
        f"{distribution} {installed} is installed; the adapter is known to work with {low} up to, not including, "
        f"{high}. Run this file on it and fix what fails",
        "versions known to work",
    )


@pytest.mark.parametrize("attribute", ["_queue_obj", "_consumer_tag"])
def test_a_rabbit_subscriber_still_has_what_readiness_reads(attribute: str) -> None:
    present = attribute in getattr(RabbitSubscriber, "__slots__", ()) or hasattr(RabbitSubscriber, attribute)
    assert present, broke(f"RabbitSubscriber has no `{attribute}` any more", "consumers: attached or not")


async def test_a_started_subscriber_holds_its_aio_pika_queue_and_consumer_tag(amqp_url: str) -> None:
    broker = new_broker(amqp_url)
    subscriber = manual_subscriber(broker, "adapter.guard.subscriber")

    @subscriber
    async def handle(body: bytes) -> None:
        await rabbitmq.current_message(broker).ack()

    async with running(broker):
        queue, tag = subscriber._queue_obj, subscriber._consumer_tag
        assert isinstance(queue, aio_pika.abc.AbstractQueue), broke(
            f"a started subscriber's `_queue_obj` is {queue!r}, not an aio-pika queue", "consumers: attached or not"
        )
        assert isinstance(tag, str) and tag, broke(
            f"a started subscriber's `_consumer_tag` is {tag!r}, not the consumer tag", "consumers: attached or not"
        )
        consume = inspect.signature(queue.consume).parameters
        assert {"callback", "no_ack", "arguments"} <= set(consume), broke(
            f"aio-pika's Queue.consume takes {list(consume)}", "the raw consumer"
        )


def test_the_broker_config_still_has_a_channel_manager_that_opens_channels() -> None:
    broker = RabbitBroker("amqp://guest:guest@localhost:5672/", logger=None)
    manager = getattr(getattr(broker, "config", None), "channel_manager", None)
    get_channel = getattr(manager, "get_channel", None)
    assert get_channel is not None and inspect.iscoroutinefunction(get_channel), broke(
        "RabbitBroker.config.channel_manager.get_channel(Channel) is gone", "confirmed raw publish"
    )
    assert "channel" in inspect.signature(get_channel).parameters, broke(
        "ChannelManager.get_channel no longer takes a Channel spec", "confirmed raw publish"
    )


async def test_a_managed_channel_is_a_robust_channel_over_an_aiormq_channel(amqp_url: str) -> None:
    broker = new_broker(amqp_url)
    async with running(broker):
        robust = await broker.config.channel_manager.get_channel(Channel(publisher_confirms=True))
        assert isinstance(robust, aio_pika.abc.AbstractRobustChannel), broke(
            f"the channel manager gave {type(robust).__name__}, not aio-pika's robust channel", "confirmed raw publish"
        )
        underlay = await robust.get_underlay_channel()
        assert isinstance(underlay, aiormq.Channel), broke(
            f"get_underlay_channel() gave {type(underlay).__name__}, not aiormq.Channel", "confirmed raw publish"
        )
        assert underlay.publisher_confirms, broke(
            "the managed channel has no publisher confirms", "confirmed raw publish"
        )


@pytest.mark.parametrize(
    ("method", "parameters", "section"),
    [
        (
            "basic_publish",
            {"exchange", "routing_key", "properties", "mandatory", "timeout", "wait"},
            "confirmed raw publish",
        ),
        ("basic_ack", {"delivery_tag", "multiple"}, "acknowledging on the delivery channel"),
    ],
)
def test_aiormq_channel_methods_take_what_the_adapter_passes(method: str, parameters: set[str], section: str) -> None:
    taken = set(inspect.signature(getattr(aiormq.Channel, method)).parameters)
    assert parameters <= taken, broke(f"aiormq.Channel.{method} no longer takes {sorted(parameters - taken)}", section)


async def test_a_faststream_message_wraps_the_aio_pika_one_and_is_in_the_context(amqp_url: str) -> None:
    broker = new_broker(amqp_url)
    subscriber = manual_subscriber(broker, "adapter.guard.message")
    found: list[tuple[object, object, object, object]] = []

    @subscriber
    async def handle(body: bytes) -> None:
        message = broker.context.get_local("message")
        raw = getattr(message, "raw_message", None)
        # Read while the channel is open (aio-pika refuses `channel` once it is closed).
        found.append((message, raw, getattr(raw, "channel", None), getattr(raw, "delivery_tag", None)))
        await message.ack()

    async with running(broker):
        await publish(broker, "adapter.guard.message", b"x")

        async def handled() -> bool:
            return bool(found)

        await eventually(handled, "the message handled")
    ((message, raw, channel, tag),) = found
    assert isinstance(message, RabbitMessage), broke(
        f'broker.context.get_local("message") in a handler gave {message!r}, not the RabbitMessage',
        "the message being handled",
    )
    assert isinstance(raw, aio_pika.IncomingMessage), broke(
        f"RabbitMessage.raw_message is {type(raw).__name__}, not aio-pika's IncomingMessage",
        "acknowledging on the delivery channel",
    )
    assert isinstance(channel, aiormq.abc.AbstractChannel), broke(
        "aio-pika's IncomingMessage.channel is no longer the aiormq channel it was delivered on",
        "acknowledging on the delivery channel",
    )
    assert tag == 1, broke(
        f"aio-pika's IncomingMessage.delivery_tag is {tag!r}, not the channel's count from 1",
        "acknowledging on the delivery channel",
    )
    assert getattr(raw, "redelivered", None) is False, broke(
        "aio-pika's IncomingMessage.redelivered is no longer the broker's flag", "the message being handled"
    )


@pytest.mark.parametrize("name", ["AMQPError", "ChannelInvalidStateError", "ChannelPreconditionFailed"])
def test_aio_pika_re_exports_the_aiormq_exceptions_the_services_catch(name: str) -> None:
    assert getattr(aio_pika.exceptions, name, None) is getattr(aiormq.exceptions, name), broke(
        f"aio_pika.exceptions.{name} is no longer aiormq's (what the AMQP channel raises)", "errors"
    )


def test_the_direct_reply_to_pseudo_queue_is_still_rabbitmqs() -> None:
    assert rabbitmq.DIRECT_REPLY_TO == "amq.rabbitmq.reply-to", broke(
        f"FastStream's RABBIT_REPLY is now {rabbitmq.DIRECT_REPLY_TO!r}", "the direct reply-to consumer"
    )


# --- the rule: nothing else goes under FastStream's API ---------------------------

ROOT = Path(__file__).resolve().parents[2]
UNDER_THE_API = re.compile(
    r"^\s*(import|from)\s+(aio_pika|aiormq|pamqp)\b"  # the libraries under FastStream
    r"|\.raw_message\b|\.get_local\(|\._queue_obj\b|\._consumer_tag\b|\.channel_manager\b|\.get_underlay_channel\("
    r"|\bRABBIT_REPLY\b",
    re.MULTILINE,
)


def test_only_the_adapter_goes_under_faststreams_api() -> None:
    offenders = [
        f"{path.relative_to(ROOT)}:{source.count(chr(10), 0, match.start()) + 1}: {match.group(0).strip()}"
        for folder in ("services", "shared")
        for path in sorted((ROOT / folder).rglob("*.py"))
        if path != ROOT / "shared" / "rabbitmq.py"
        for source in [path.read_text()]
        for match in UNDER_THE_API.finditer(source)
    ]
    assert offenders == [], "use (or add) a named operation in shared/rabbitmq.py instead:\n" + "\n".join(offenders)


def test_the_cli_uses_aio_pika_but_not_aiormq() -> None:
    # Operator commands open their own aio-pika connection (public API); aiormq is under it.
    offenders = [
        str(path.relative_to(ROOT))
        for path in sorted((ROOT / "cli").rglob("*.py"))
        if re.search(r"^\s*(import|from)\s+aiormq\b", path.read_text(), re.MULTILINE)
    ]
    assert offenders == [], f"import the exceptions from aio_pika.exceptions: {offenders}"
