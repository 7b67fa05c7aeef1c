"""Inbound SMS: routed to the project that owns its destination, an opt-out keyword applied
to that project's opt-out list, then published as an `InboundMessage`. The dispatcher's
`CarrierReportSink` for inbound messages (`carrier_reports.py`).

Order, for "nothing lost": the opt-out change is written to Redis first, the message
published (confirmed) second, and only then does `inbound` return, so the carrier's
deliver_sm_resp comes after both. A crash in between makes the carrier send the message
again; applying it again changes nothing (adding a number to a set twice leaves it there
once), and the ledger drops the repeated event by its `event_id`.

An inbound SMS no project owns is published all the same, with `project` None, for the
ledger to record and an operator to see (`rsms accounts add-inbound-number` routes the
next ones); a keyword in it changes no list, since there is no project to apply it to.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path

from services.dispatcher.carrier_reports import CarrierInbound
from services.dispatcher.inbound_rules import Keywords, Owner, inbound_routes, keyword_action, opt_out_number, route
from services.dispatcher.receipts import Publisher
from shared.accounts_reload import AccountsReloader
from shared.contracts import InboundMessage, OptOutAction
from shared.log import get_logger
from shared.optouts import OptOuts
from shared.topology import INBOUND_EXCHANGE

log = get_logger(__name__)

_NAMESPACE = uuid.UUID("0c5e2f8a-41d7-4b6e-8a93-7d1f2b6c9e05")


def inbound_event_id(message: CarrierInbound) -> uuid.UUID:
    """Stable per carrier message where the carrier names it; otherwise per arrival."""
    identity = (
        f"inbound:{message.carrier_id}"
        if message.carrier_id
        else f"inbound:{message.sender}:{message.destination}:{message.received_at.isoformat()}:{message.text}"
    )
    return uuid.uuid5(_NAMESPACE, identity)


class InboundDirectory:
    """Who owns which inbound address, kept current from the accounts file."""

    def __init__(self, accounts_file: Path) -> None:
        self._file = AccountsReloader(accounts_file)
        self.routes: Mapping[str, Owner] = {}
        self.reload()

    def reload(self) -> None:
        if self._file.reload():
            self.routes = inbound_routes(self._file.accounts)

    async def watch(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            self.reload()


class InboundSink:
    def __init__(
        self,
        directory: InboundDirectory,
        opt_outs: OptOuts,
        publisher: Publisher,
        keywords: Keywords,
        observe: Callable[[bool, OptOutAction | None], None] = lambda routed, action: None,
    ) -> None:
        self._directory = directory
        self._opt_outs = opt_outs
        self._publisher = publisher
        self._keywords = keywords
        self._observe = observe
        """Told (routed, action) of every message published: the metrics."""

    async def inbound(self, message: CarrierInbound) -> None:
        """Returns once the opt-out change is in Redis and the message is confirmed by the
        broker; raises (the carrier is answered with a temporary error) otherwise."""
        owner = route(message.destination, self._directory.routes)
        number = opt_out_number(message.sender)
        action = keyword_action(message.text, self._keywords) if owner is not None and number is not None else None
        if owner is not None and number is not None:
            if action == "opt_out":
                await self._opt_outs.add(owner.project, [number])
            elif action == "opt_in":
                await self._opt_outs.remove(owner.project, [number])
        event = InboundMessage(
            event_id=inbound_event_id(message),
            sender=message.sender,
            destination=message.destination,
            text=message.text,
            received_at=message.received_at,
            provider_reference=message.carrier_id,
            project=owner.project if owner is not None else None,
            store_body=owner.store_bodies if owner is not None else False,
            action=action,
        )
        await self._publisher.publish(event, exchange=INBOUND_EXCHANGE.name)
        self._observe(owner is not None, action)
        if owner is None:
            log.warning("inbound message unrouted: no project owns its destination", event_id=str(event.event_id))
        else:
            log.info("inbound message routed", event_id=str(event.event_id), project=owner.project, action=action)
