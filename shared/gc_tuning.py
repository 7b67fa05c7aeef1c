"""Python's cyclic garbage collector, tuned for a long-running service.

Measured under issue 10's open loop (`bench.saturation_trace`, gc.callbacks in every
process): with CPython's defaults every service ran a full (generation 2) collection every
1-3 s under load, and each one walked every object the process holds, most of them the
modules, classes and schemas loaded at start that never die: 60-390 ms with the event loop
stopped, in ingest's workers, the dispatcher and the ledger alike. Requests in flight
while a worker collected waited for it, and at 1,000 requests a second a few hundred
milliseconds of stop fill the client's connections and leave a queue behind.

Two changes, both taken once the service has started:

- `gc.freeze()`: what exists then (imports, the app, its clients) moves to the permanent
  generation, which no collection walks again. A full collection then walks only what
  was created since, and the rule that starts one (a quarter more survivors than the
  last full collection left) no longer counts the start-up heap.
- a larger generation-0 threshold (`gc_gen0_threshold`, CPython's default 700
  allocations): a request's objects live for the milliseconds the request takes; collecting
  every 700 allocations finds them alive, promotes them and makes the older generations
  fill up with objects that die right after. Collecting less often lets them die young.

Reference counting frees almost everything anyway; the collector only finds cycles, and a
frozen object that becomes garbage is simply never collected (start-up objects live as
long as the process). Memory stays bounded: the thresholds are counts, not time.
"""

from __future__ import annotations

import gc
from dataclasses import dataclass

PYTHON_DEFAULT_THRESHOLDS = (700, 10, 10)


@dataclass(frozen=True, slots=True)
class GcPlan:
    thresholds: tuple[int, int, int]
    freeze: bool


def gc_plan(gen0_threshold: int, freeze: bool) -> GcPlan:
    """What to apply: 0 leaves CPython's thresholds as they are."""
    if gen0_threshold < 0:
        raise ValueError("the generation-0 threshold is a count of allocations, 0 or more")
    gen0 = gen0_threshold or PYTHON_DEFAULT_THRESHOLDS[0]
    return GcPlan((gen0, *PYTHON_DEFAULT_THRESHOLDS[1:]), freeze)


def tune_gc(gen0_threshold: int, freeze: bool) -> GcPlan:
    """Call once the service has started (its modules imported, its app built): what
    exists then is frozen; the thresholds apply from now on."""
    plan = gc_plan(gen0_threshold, freeze)
    if plan.freeze:
        # Collect first, so that garbage of the start-up is freed, not frozen for good.
        gc.collect()
        gc.freeze()
    gc.set_threshold(*plan.thresholds)
    return plan
