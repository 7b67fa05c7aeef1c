"""What reached the simulated network: every accepted message, keyed by the gateway's
idempotency reference, and counters for everything else that happened.

A reference seen again is answered with the first delivery's id and counted as a
duplicate attempt, never as a second delivery: that is the provider-side half of the
gateway's exactly-once guarantee. With the `deduplicate` fault off it is delivered again
(kept under `<reference>#<n>`), as a provider without idempotency would. Per-recipient
work is a dict lookup and an insert.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass, field

from services.provider_sim.faults import Faults
from services.provider_sim.wire import DestinationResult, OutboundMessage


@dataclass(slots=True)
class Delivery:
    reference: str
    to: str
    sender: str
    id: str
    attempts: int = 1


@dataclass
class DeliveryLog:
    deliveries: dict[str, Delivery] = field(default_factory=dict)
    counters: Counter[str] = field(default_factory=Counter)
    _next_id: int = 1

    def record(self, message: OutboundMessage, faults: Faults, rng: random.Random) -> list[DestinationResult]:
        blocked = set(faults.blocked)
        invalid = set(faults.invalid)
        fail_rate = faults.recipient_error_rate
        results: list[DestinationResult] = []
        append = results.append
        deliveries = self.deliveries
        counters = self.counters
        counters["recipients_received"] += len(message.destinations)
        for destination in message.destinations:
            reference = destination.reference
            known = deliveries.get(reference)
            if known is not None and not faults.deduplicate:
                known.attempts += 1
                counters["duplicate_deliveries"] += 1
                provider_id = f"sim-{self._next_id}"
                self._next_id += 1
                deliveries[f"{reference}#{known.attempts}"] = Delivery(
                    reference, destination.to, message.sender, provider_id
                )
                append(DestinationResult(reference, "accepted", provider_id))
            elif known is not None:
                known.attempts += 1
                counters["duplicate_attempts"] += 1
                append(DestinationResult(reference, "duplicate", known.id))
            elif destination.to in blocked:
                counters["blocked"] += 1
                append(DestinationResult(reference, "blocked"))
            elif destination.to in invalid:
                counters["invalid"] += 1
                append(DestinationResult(reference, "invalid"))
            elif fail_rate and rng.random() < fail_rate:
                counters["failed"] += 1
                append(DestinationResult(reference, "failed"))
            else:
                provider_id = f"sim-{self._next_id}"
                self._next_id += 1
                deliveries[reference] = Delivery(reference, destination.to, message.sender, provider_id)
                append(DestinationResult(reference, "accepted", provider_id))
        return results

    def stats(self) -> dict[str, int]:
        counters = dict(self.counters)
        counters["delivered"] = len(self.deliveries)
        return counters

    def reset(self) -> None:
        self.deliveries.clear()
        self.counters.clear()
