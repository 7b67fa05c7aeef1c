"""Copies of events for webhooks only while some project has a webhook.

The sender's event queues (rsms.webhooks.{outcomes,receipts,inbound}) get a copy of every
outcome batch, receipt and inbound message only while they are bound to their fanout
exchanges. A gateway where no project has a webhook used to pay RabbitMQ for each copy
(one more quorum-queue enqueue, delivery and ack) just for the sender to let it go unread;
now those queues are bound to their exchanges only while the sender's directory of
webhooks (the accounts file, `endpoints.py`) names at least one.

The rule: **bound iff my directory is non-empty**, asserted at the sender's start (before
its consumers start) and again at every reload tick of the accounts file
(`RSMS_ACCOUNTS_RELOAD_SECONDS`), whether the file changed or not. Binding and unbinding
are idempotent, so asserting is cheap (three broker round trips a tick) and never wrong
for long:

- Several senders read the same accounts file. While an edit is taken up, one may unbind
  while another still sees endpoints (or the other way round); since every sender
  re-asserts at every tick, and re-reads the file just before, they agree again within one
  tick of the last one to read the edit. Senders pointed at different accounts files (a
  misconfiguration: they would also deliver differently) would undo each other's bindings
  tick after tick.
- An event published while the queues are unbound is not copied for webhooks at all: it
  is dropped for webhooks, as an event of a project without a webhook always was (the
  sender let those go unread). A webhook added with `rsms accounts set-webhook` therefore
  gets events published from the first tick after the edit on, as before. The ledger's
  copy is untouched: it has queues of its own.
- What is already on the queues when they are unbound (a backlog, events of a webhook just
  removed) is still consumed: delivered to projects that still have a webhook, let go
  unread otherwise. The queues stay declared and durable, and stay bound while the sender
  is down, so events of a project with a webhook still wait there for it as before.
- An accounts file that does not parse keeps the last good endpoints in force; one that
  never parsed (or is missing) at start is no webhooks, so the queues are unbound, as the
  sender would have let every event go unread before.

Migration: a deployment made by an older version has the bindings (every version before
bound the queues at the sender's start). The first start of this version unbinds them if
no project has a webhook; `rsms migrate-topology` applies the same rule after it
re-declares the queues (it reads `RSMS_ACCOUNTS_FILE` as the sender does), so migrating
does not leave a deployment with webhooks unbound until its sender starts.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

from faststream.rabbit import RabbitBroker

from services.webhooks.endpoints import EndpointDirectory
from services.webhooks.metrics import WebhooksMetrics
from shared.accounts import WebhookEndpoint
from shared.log import get_logger
from shared.rabbitmq import AMQPError, ChannelInvalidStateError
from shared.topology import bind_webhook_queues

log = get_logger(__name__)


def events_wanted(webhooks: Mapping[str, WebhookEndpoint]) -> bool:
    """Whether the event queues should be bound, from a directory of webhooks (project →
    endpoint, `EndpointDirectory.endpoints` or `webhook_endpoints`): iff it names one."""
    return len(webhooks) > 0


class EventBindings:
    """Keeps the broker's bindings of the event queues to what `events_wanted` says."""

    def __init__(self, broker: RabbitBroker, directory: EndpointDirectory, metrics: WebhooksMetrics) -> None:
        self._broker = broker
        self._directory = directory
        self._metrics = metrics
        self._bound: bool | None = None  # as last asserted; None: not yet
        self._stopping = False

    async def assert_wanted(self) -> None:
        """Bind or unbind as the directory says now. Raises what the broker raises."""
        wanted = events_wanted(self._directory.endpoints)
        await bind_webhook_queues(self._broker, bound=wanted)
        if wanted != self._bound:
            log.info("webhooks.events_bound" if wanted else "webhooks.events_unbound")
        self._bound = wanted
        self._metrics.events_bound.set(int(wanted))

    def stop(self) -> None:
        """The sender is shutting down: `watch` asserts nothing more. Called before the
        broker stops; a tick then would only fail on the closing connection and warn of it."""
        self._stopping = True

    async def watch(self, interval: float) -> None:
        """Every `interval`: re-read the accounts file, then assert the bindings, changed or
        not (another sender may have asserted otherwise meanwhile). A broker that cannot be
        reached this tick (reconnecting) is tried again at the next one. Returns once
        `stop` was called."""
        while not self._stopping:
            await asyncio.sleep(interval)
            if self._stopping:
                return
            self._directory.reload()
            try:
                await self.assert_wanted()
            # A closed channel (the connection is being restored) raises a RuntimeError kind.
            except (AMQPError, ChannelInvalidStateError, ConnectionError, TimeoutError) as error:
                if self._stopping:
                    return  # the broker closed under this tick: shutdown, not a fault
                log.warning("webhooks.bindings_not_asserted", error=str(error) or type(error).__name__)
