"""The webhook sender against the real broker and a real HTTP receiver that verifies every
request with the README's snippet: events arrive signed, failures are retried through the
delay queues and dead-lettered, `rsms webhooks replay` delivers them, and a project whose
receiver hangs does not hold up another project's events."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest
from click.testing import CliRunner, Result
from structlog.testing import capture_logs

from cli.main import rsms
from shared import accounts as store
from shared.contracts import OutcomeBatch
from shared.topology import (
    LEDGER_OUTCOMES_QUEUE,
    OUTCOMES_EXCHANGE,
    WEBHOOK_DEAD_LETTER_QUEUE,
    WEBHOOK_EVENT_SOURCES,
    WEBHOOK_INBOUND_QUEUE,
    WEBHOOK_OUTCOMES_QUEUE,
    WEBHOOK_RECEIPTS_QUEUE,
    bind_webhook_queues,
)
from tests.support.queues import depth
from tests.webhooks.receiver import Receiver, free_port
from tests.webhooks.support import (
    inbound,
    outcome,
    publish,
    publisher,
    receipt,
    running_sender,
    sender_settings,
    write_accounts,
)

T = TypeVar("T")
ROOT = Path(__file__).resolve().parents[2]
SECRETS = {name: f"whsec_test_secret_of_{name}" for name in ("acme", "flaky", "stuck", "fine")}
EVENT_BINDINGS = {(exchange.name, queue.name) for queue, exchange in WEBHOOK_EVENT_SOURCES}


async def eventually(probe: Callable[[], Awaitable[T] | T], what: str, within: float = 30.0) -> T:
    deadline = asyncio.get_running_loop().time() + within
    while True:
        value = probe()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value  # type: ignore[return-value]
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        await asyncio.sleep(0.05)


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    server = Receiver(SECRETS)
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


def configure(path: Path, receiver: Receiver, projects: list[str], without_webhook: tuple[str, ...] = ()) -> None:
    webhooks: dict[str, tuple[str, str] | None] = {p: (receiver.url(p), SECRETS[p]) for p in projects}
    write_accounts(path, webhooks | dict.fromkeys(without_webhook))


async def cli(amqp_url: str, *args: str) -> Result:
    # The commands run their own event loop (asyncio.run): off this one.
    return await asyncio.to_thread(CliRunner(env={"RSMS_AMQP_URL": amqp_url}).invoke, rsms, list(args))


async def test_outcomes_receipts_and_inbound_arrive_signed_as_events(
    amqp_url: str, accounts_file: Path, receiver: Receiver
) -> None:
    configure(accounts_file, receiver, ["acme"], without_webhook=("quiet",))
    sent = outcome("acme", {"+4790000001": "sent", "+4790000002": "failed", "+4790000003": "retrying"})
    delivered = receipt("acme", "+4790000001", "delivered", message_id=sent.message_id)
    expired = receipt("acme", "+4790000002", "expired", message_id=sent.message_id)
    accepted = receipt("acme", "+4790000001", "accepted")  # not final: no event
    mobile = inbound("acme")
    async with running_sender(sender_settings(amqp_url, accounts_file)), publisher(amqp_url) as broker:
        await publish(broker, sent, delivered, expired, accepted, mobile, inbound(None))
        await publish(broker, outcome("quiet", {"+4790000009": "sent"}), receipt("quiet"))
        events = await eventually(lambda: len(receiver.events("acme")) >= 5 and receiver.events("acme"), "5 events")
        await asyncio.sleep(0.5)  # anything more would be a bug: give it the chance to show

    assert receiver.rejected == []
    by_type: dict[str, list[dict[str, Any]]] = {}
    for event in receiver.events("acme"):
        by_type.setdefault(event["type"], []).append(event)
    assert len({e["id"] for e in events}) == len(receiver.events("acme")) == 5
    [was_sent] = by_type["message.sent"]
    assert was_sent | {"id": None, "occurredAt": None, "createdAt": None} == {
        "id": None,
        "type": "message.sent",
        "project": "acme",
        "status": "sent",
        "errorCode": None,
        "occurredAt": None,
        "createdAt": None,
        "test": False,
        "messageId": str(sent.message_id),
        "recipient": "+4790000001",
    }
    assert sorted((e["recipient"], e["status"], e["errorCode"]) for e in by_type["message.failed"]) == [
        ("+4790000002", "expired", "001"),
        ("+4790000002", "failed", "RECIPIENT_BLOCKED"),
    ]
    [was_delivered] = by_type["message.delivered"]
    assert (was_delivered["recipient"], was_delivered["messageId"]) == ("+4790000001", str(sent.message_id))
    [was_inbound] = by_type["message.inbound"]
    assert {k: was_inbound[k] for k in ("from", "to", "text", "status")} == {
        "from": "+4798765432",
        "to": "2222",
        "text": "Yes please",
        "status": "received",
    }
    assert not {"messageId", "recipient"} & set(was_inbound) and not {"from", "to", "text"} & set(was_delivered)
    # The outcome's two events came in one request; a project without a webhook got none.
    from_outcome = {was_sent["id"], next(e["id"] for e in by_type["message.failed"] if e["status"] == "failed")}
    assert any(from_outcome <= {e["id"] for e in batch} for batch in receiver.batches["acme"])
    assert receiver.attempts["quiet"] == 0


async def test_an_outcome_batch_reaches_each_project_once_per_recipient(
    amqp_url: str, accounts_file: Path, receiver: Receiver
) -> None:
    # The dispatcher's one message for a delivered job batch: outcomes of several projects.
    configure(accounts_file, receiver, ["acme", "fine"], without_webhook=("quiet",))
    acme = [outcome("acme", {f"+479000001{n}": "sent"}) for n in range(3)]
    fine = outcome("fine", {"+4790000020": "sent", "+4790000021": "failed"})
    quiet = outcome("quiet", {"+4790000030": "sent"})
    async with running_sender(sender_settings(amqp_url, accounts_file)), publisher(amqp_url) as broker:
        await publish(broker, OutcomeBatch(events=[acme[0], fine, quiet, acme[1], acme[2]]))
        await eventually(lambda: len(receiver.events("acme")) >= 3 and len(receiver.events("fine")) >= 2, "5 events")
        await asyncio.sleep(0.5)  # anything more would be a bug: give it the chance to show

    assert receiver.rejected == []
    assert sorted(e["recipient"] for e in receiver.events("acme")) == ["+4790000010", "+4790000011", "+4790000012"]
    assert sorted((e["recipient"], e["type"]) for e in receiver.events("fine")) == [
        ("+4790000020", "message.sent"),
        ("+4790000021", "message.failed"),
    ]
    assert receiver.attempts["quiet"] == 0


async def test_a_failing_receiver_is_retried_then_dead_lettered_and_replay_delivers(
    amqp_url: str, accounts_file: Path, receiver: Receiver
) -> None:
    configure(accounts_file, receiver, ["flaky"])
    receiver.behaviour["flaky"] = "fail"
    event = receipt("flaky", "+4790000004", "delivered")
    async with running_sender(sender_settings(amqp_url, accounts_file)), publisher(amqp_url) as broker:
        await publish(broker, event)
        await eventually(lambda: depth(amqp_url, WEBHOOK_DEAD_LETTER_QUEUE.name), "a dead letter")
        assert receiver.attempts["flaky"] == 3  # RSMS_WEBHOOKS_MAX_ATTEMPTS, each a signed request
        assert receiver.events("flaky") == []

        listed = await cli(amqp_url, "webhooks", "list", "--json")
        assert listed.exit_code == 0, listed.output
        [row] = json.loads(listed.output)
        assert (row["project"], row["reason"], row["events"], row["attempts"], row["last_error"]) == (
            "flaky",
            "attempts_exhausted",
            1,
            3,
            "HTTP 500",
        )
        table = await cli(amqp_url, "webhooks", "list")
        assert "flaky" in table.output and "HTTP 500" in table.output

        receiver.behaviour["flaky"] = "ok"
        replayed = await cli(amqp_url, "webhooks", "replay", "--project", "flaky")
        assert replayed.exit_code == 0 and "Replayed 1 delivery(ies), 1 event(s)." in replayed.output
        [delivered] = await eventually(lambda: receiver.events("flaky"), "the replayed event")
    assert delivered["recipient"] == "+4790000004" and delivered["type"] == "message.delivered"
    assert await depth(amqp_url, WEBHOOK_DEAD_LETTER_QUEUE.name) == 0
    assert receiver.rejected == []


async def test_a_hanging_receiver_holds_only_its_own_project(
    amqp_url: str, accounts_file: Path, receiver: Receiver
) -> None:
    configure(accounts_file, receiver, ["stuck", "fine"])
    receiver.behaviour["stuck"] = "hang"
    settings = sender_settings(
        amqp_url,
        accounts_file,
        webhooks_max_concurrent_per_project=2,
        webhooks_batch_max_events=5,
        webhooks_request_timeout_seconds=120.0,  # longer than the test: it hangs throughout
        webhooks_max_attempts=1000,
    )
    async with running_sender(settings), publisher(amqp_url) as broker:
        await publish(broker, *(receipt("stuck", f"+47910000{i:02d}") for i in range(40)))
        await eventually(lambda: receiver.hanging["stuck"] == 2, "both of stuck's slots hanging")
        await publish(broker, *(receipt("fine", f"+47920000{i:02d}") for i in range(12)))
        fine = await eventually(lambda: len(receiver.events("fine")) >= 12 and receiver.events("fine"), "fine's events")
        # All of it while stuck's receiver still holds its requests, and never more than its slots.
        assert receiver.hanging["stuck"] == 2 and receiver.events("stuck") == []
        assert receiver.most_hanging["stuck"] == 2
        receiver.release.set()
    assert sorted(e["recipient"] for e in fine) == [f"+47920000{i:02d}" for i in range(12)]
    assert receiver.rejected == []


async def test_events_in_flight_when_the_sender_stops_are_delivered_by_the_next_one(
    amqp_url: str, accounts_file: Path, receiver: Receiver
) -> None:
    configure(accounts_file, receiver, ["acme"])
    receiver.behaviour["acme"] = "hang"
    settings = sender_settings(amqp_url, accounts_file, webhooks_request_timeout_seconds=120.0)
    events = [receipt("acme", f"+47930000{i:02d}") for i in range(5)]
    async with publisher(amqp_url) as broker:
        async with running_sender(settings):
            await publish(broker, *events)
            await eventually(lambda: receiver.hanging["acme"] >= 1, "the request hanging")
        # Stopped with the request unanswered: nothing was acknowledged, nothing is lost.
        receiver.behaviour["acme"] = "ok"
        async with running_sender(settings):
            taken = await eventually(lambda: len(receiver.events("acme")) >= 5 and receiver.events("acme"), "events")
    assert {e["recipient"] for e in taken} == {f"+47930000{i:02d}" for i in range(5)}


async def test_a_sender_killed_mid_request_loses_nothing(
    amqp_url: str, accounts_file: Path, receiver: Receiver, tmp_path: Path
) -> None:
    """`rsms webhooks` as its own process, killed (-9) while its request hangs: the events
    were not acknowledged, so the next sender delivers them."""
    configure(accounts_file, receiver, ["acme"])
    receiver.behaviour["acme"] = "hang"
    env = {k: v for k, v in os.environ.items() if not k.startswith("RSMS_")} | {
        "RSMS_AMQP_URL": amqp_url,
        "RSMS_ACCOUNTS_FILE": str(accounts_file),
        "RSMS_WEBHOOKS_HTTP_PORT": str(free_port()),
        "RSMS_WEBHOOKS_BATCH_MAX_WAIT_MS": "20",
        "PYTHONPATH": str(ROOT),
    }

    def start() -> subprocess.Popen[bytes]:
        log = (tmp_path / "sender.log").open("ab")
        return subprocess.Popen(
            [sys.executable, "-m", "cli", "webhooks"], cwd=tmp_path, env=env, stdout=log, stderr=log
        )

    events = [receipt("acme", f"+47940000{i:02d}") for i in range(3)]
    first = start()
    try:
        async with publisher(amqp_url) as broker:
            await publish(broker, *events)
        await eventually(lambda: receiver.hanging["acme"] >= 1, "the request hanging", within=60)
        first.send_signal(signal.SIGKILL)
        first.wait(10)
    finally:
        if first.poll() is None:
            first.kill()
    receiver.behaviour["acme"] = "ok"
    second = start()
    try:
        taken = await eventually(lambda: len(receiver.events("acme")) >= 3 and receiver.events("acme"), "events", 60)
    finally:
        second.terminate()
        second.wait(30)
    assert {e["recipient"] for e in taken} == {f"+47940000{i:02d}" for i in range(3)}


async def bound_event_queues(rabbit_admin: Any, amqp_url: str) -> set[tuple[str, str]]:
    """(exchange, queue) of the sender's event queues bound on the broker now."""
    bindings: set[tuple[str, str]] = await asyncio.to_thread(rabbit_admin.bindings, amqp_url)
    return bindings & EVENT_BINDINGS


def event_queues_bound(rabbit_admin: Any, amqp_url: str, bound: bool) -> Callable[[], Awaitable[bool]]:
    """A probe for `eventually`: all three event queues bound (`bound`), or none."""

    async def probe() -> bool:
        return await bound_event_queues(rabbit_admin, amqp_url) == (EVENT_BINDINGS if bound else set())

    return probe


async def test_events_are_copied_for_webhooks_only_while_a_project_has_one(
    amqp_url: str, accounts_file: Path, receiver: Receiver, rabbit_admin: Any
) -> None:
    write_accounts(accounts_file, {"acme": None})
    settings = sender_settings(amqp_url, accounts_file)
    async with publisher(amqp_url, events_bound=False) as broker:
        async with running_sender(settings):
            assert await bound_event_queues(rabbit_admin, amqp_url) == set()
        # Stopped, so nothing would take a copy off its queue; a confirmed publish on a
        # fanout has reached every queue bound to it.
        await publish(broker, outcome("acme", {"+4790000001": "sent"}))
        assert await depth(amqp_url, WEBHOOK_OUTCOMES_QUEUE.name) == 0
        assert await depth(amqp_url, LEDGER_OUTCOMES_QUEUE.name) == 1  # the ledger's copy, as ever

        async with running_sender(settings):
            with store.editing(accounts_file) as data:
                store.set_webhook(data, "acme", receiver.url("acme"), SECRETS["acme"])
            await eventually(event_queues_bound(rabbit_admin, amqp_url, True), "bound after the reload")
            sent = outcome("acme", {"+4790000002": "sent"})
            await publish(broker, sent)
            [event] = await eventually(lambda: receiver.events("acme"), "the event at the receiver")
            assert (event["type"], event["messageId"]) == ("message.sent", str(sent.message_id))

            with store.editing(accounts_file) as data:
                store.remove_webhook(data, "acme")
            await eventually(event_queues_bound(rabbit_admin, amqp_url, False), "unbound after the reload")
        await publish(broker, outcome("acme", {"+4790000003": "sent"}))
        assert await depth(amqp_url, WEBHOOK_OUTCOMES_QUEUE.name) == 0
        assert await depth(amqp_url, LEDGER_OUTCOMES_QUEUE.name) == 3
    assert len(receiver.events("acme")) == 1 and receiver.rejected == []


async def test_every_sender_asserts_the_bindings_at_every_tick(
    amqp_url: str, accounts_file: Path, receiver: Receiver, rabbit_admin: Any
) -> None:
    """Two senders on one accounts file. Whatever another sender asserted meanwhile (one
    that has not read an edit yet), each asserts its own view again at its next tick, the
    file changed or not, so they converge."""
    configure(accounts_file, receiver, ["acme"])
    async with (
        publisher(amqp_url, events_bound=False) as broker,
        running_sender(sender_settings(amqp_url, accounts_file)),
        running_sender(sender_settings(amqp_url, accounts_file)),
    ):
        assert await bound_event_queues(rabbit_admin, amqp_url) == EVENT_BINDINGS  # at their start
        await bind_webhook_queues(broker, bound=False)  # a sender that still sees no webhook
        await eventually(event_queues_bound(rabbit_admin, amqp_url, True), "bound again")

        with store.editing(accounts_file) as data:
            store.remove_webhook(data, "acme")
        await eventually(event_queues_bound(rabbit_admin, amqp_url, False), "unbound by both")
        await bind_webhook_queues(broker, bound=True)  # a sender that still sees acme's webhook
        await eventually(event_queues_bound(rabbit_admin, amqp_url, False), "unbound again")


async def test_an_older_versions_bindings_go_at_the_first_start_without_webhooks(
    amqp_url: str, accounts_file: Path, rabbit_admin: Any
) -> None:
    """Every version before bound the queues at the sender's start. The first start of this
    one without webhooks unbinds them; what was queued meanwhile is let go unread."""
    write_accounts(accounts_file, {"quiet": None})
    async with publisher(amqp_url, events_bound=True) as broker:  # as the older version left them
        await publish(broker, outcome("quiet", {"+4790000009": "sent"}), receipt("quiet"), inbound("quiet"))
        # Not even parsed: a body no version reads goes too, and no dead letter is made of it.
        await broker.publish(b"{not json", exchange=OUTCOMES_EXCHANGE, persist=True)
        assert await depth(amqp_url, WEBHOOK_OUTCOMES_QUEUE.name) == 2

        async with running_sender(sender_settings(amqp_url, accounts_file)):
            assert await bound_event_queues(rabbit_admin, amqp_url) == set()

            async def drained() -> bool:
                queues = (WEBHOOK_OUTCOMES_QUEUE, WEBHOOK_RECEIPTS_QUEUE, WEBHOOK_INBOUND_QUEUE)
                return all([await depth(amqp_url, queue.name) == 0 for queue in queues])

            await eventually(drained, "the sender's queues drained")
        await publish(broker, outcome("quiet", {"+4790000010": "sent"}))
        assert await depth(amqp_url, WEBHOOK_OUTCOMES_QUEUE.name) == 0
    assert await depth(amqp_url, WEBHOOK_DEAD_LETTER_QUEUE.name) == 0


async def test_a_clean_stop_asserts_no_bindings_on_the_closing_broker(
    amqp_url: str, accounts_file: Path, receiver: Receiver
) -> None:
    """The reload ticks stop before the broker does: a tick on the closing connection
    failed and warned "bindings not asserted" at every clean stop."""
    configure(accounts_file, receiver, ["acme"])
    with capture_logs() as logs:
        for _ in range(5):
            async with running_sender(sender_settings(amqp_url, accounts_file, accounts_reload_seconds=0.005)):
                await asyncio.sleep(0.1)  # ticks asserting, bound
    assert [entry for entry in logs if entry["event"] == "webhooks.bindings_not_asserted"] == []
    assert [entry for entry in logs if entry["event"] == "webhooks.stopped"] != []
