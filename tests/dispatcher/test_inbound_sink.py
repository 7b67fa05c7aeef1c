"""The inbound sink against the real Redis and RabbitMQ and a real accounts file: routed
to the owner, STOP and START applied to that project's opt-out list before the publish,
a repeat changing nothing, an unrouted message published all the same."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
from faststream.rabbit import RabbitBroker, RabbitQueue
from redis.asyncio import Redis
from redis.exceptions import RedisError

from services.dispatcher.carrier_reports import CarrierInbound
from services.dispatcher.inbound import InboundDirectory, InboundSink
from services.dispatcher.inbound_rules import Keywords
from services.dispatcher.outbox import Outbox
from shared import accounts as store
from shared.contracts import InboundMessage
from shared.optouts import OptOuts
from shared.topology import INBOUND_EXCHANGE, declare_topology
from tests.support.queues import drain

MOBILE = "+4790000555"
QUEUE = "test.inbound"


@dataclass
class Rig:
    sink: InboundSink
    directory: InboundDirectory
    opt_outs: OptOuts
    broker: RabbitBroker
    accounts_file: Path
    observed: list[tuple[bool, str | None]]


@pytest.fixture
async def rig(amqp_url: str, redis_url: str, tmp_path: Path) -> AsyncIterator[Rig]:
    accounts_file = tmp_path / "accounts.toml"
    with store.editing(accounts_file) as data:
        store.create_project(data, "acme", "Acme")
        store.add_inbound_number(data, "acme", "+4790000001")
        store.create_project(data, "quiet", "Quiet", store_bodies=False)
        store.add_inbound_number(data, "quiet", "2222")
    broker = RabbitBroker(amqp_url, logger=None)
    await broker.connect()
    await declare_topology(broker)
    queue = await broker.declare_queue(RabbitQueue(QUEUE))
    await queue.bind(await broker.declare_exchange(INBOUND_EXCHANGE))
    outbox = Outbox(broker, timeout_seconds=5)
    await outbox.start()
    redis = Redis.from_url(redis_url, decode_responses=True)
    directory = InboundDirectory(accounts_file)
    opt_outs = OptOuts(redis)
    try:
        observed: list[tuple[bool, str | None]] = []
        sink = InboundSink(directory, opt_outs, outbox, Keywords.with_defaults(), lambda *seen: observed.append(seen))
        yield Rig(sink, directory, opt_outs, broker, accounts_file, observed)
    finally:
        await redis.aclose()
        await broker.stop()


def mo(text: str, destination: str = "+4790000001", *, carrier_id: str | None = None) -> CarrierInbound:
    return CarrierInbound(MOBILE, destination, text, datetime.now(UTC), carrier_id)


async def published(amqp_url: str, count: int) -> list[InboundMessage]:
    return [InboundMessage.model_validate(m["body"]) for m in await drain(amqp_url, QUEUE, expect=count)]


async def test_stop_then_start_for_the_owning_project_only(rig: Rig, amqp_url: str) -> None:
    await rig.sink.inbound(mo("Stop please"))
    assert await rig.opt_outs.members("acme") == [MOBILE]  # applied before inbound() returned
    assert await rig.opt_outs.members("quiet") == []
    await rig.sink.inbound(mo("START", "+2222"))  # to quiet: acme's list is unaffected
    assert await rig.opt_outs.members("acme") == [MOBILE]
    await rig.sink.inbound(mo("start"))
    assert await rig.opt_outs.members("acme") == []
    stop, quiet_start, start = await published(amqp_url, 3)
    assert (stop.project, stop.action, stop.store_body, stop.text) == ("acme", "opt_out", True, "Stop please")
    assert (quiet_start.project, quiet_start.action, quiet_start.store_body) == ("quiet", "opt_in", False)
    assert (start.project, start.action) == ("acme", "opt_in")
    assert rig.observed == [(True, "opt_out"), (True, "opt_in"), (True, "opt_in")]


async def test_a_repeated_message_changes_nothing_and_keeps_its_event_id(rig: Rig, amqp_url: str) -> None:
    message = mo("STOP", carrier_id="mo-1")
    await rig.sink.inbound(message)
    await rig.sink.inbound(message)  # the carrier sent it again (no deliver_sm_resp reached it)
    assert await rig.opt_outs.members("acme") == [MOBILE]
    first, second = await published(amqp_url, 2)
    assert first.event_id == second.event_id


async def test_an_unrouted_message_is_published_with_no_project_and_changes_no_list(rig: Rig, amqp_url: str) -> None:
    await rig.sink.inbound(mo("STOP", "+4799999999"))
    (message,) = await published(amqp_url, 1)
    assert (message.project, message.action, message.store_body) == (None, None, False)
    assert (message.destination, message.text) == ("+4799999999", "STOP")
    assert await rig.opt_outs.members("acme") == []
    assert rig.observed == [(False, None)]  # counted as unrouted (the metrics)


async def test_a_new_inbound_number_routes_once_the_accounts_file_is_reloaded(rig: Rig, amqp_url: str) -> None:
    with store.editing(rig.accounts_file) as data:
        store.add_inbound_number(data, "acme", "+4799999999")
    rig.directory.reload()
    await rig.sink.inbound(mo("hello", "4799999999"))
    (message,) = await published(amqp_url, 1)
    assert (message.project, message.action) == ("acme", None)


async def test_nothing_is_published_when_redis_fails_so_the_carrier_sends_it_again(rig: Rig) -> None:
    unreachable = Redis.from_url("redis://127.0.0.1:1/0")
    broken = InboundSink(rig.directory, OptOuts(unreachable), _NoPublish(), Keywords.with_defaults())
    try:
        with pytest.raises(RedisError):  # the SMPP adapter answers deliver_sm with a temporary error
            await broken.inbound(mo("STOP"))
    finally:
        await unreachable.aclose()


class _NoPublish:
    async def publish(self, *args: object, **kwargs: object) -> None:
        raise AssertionError("published although the opt-out was not applied")
