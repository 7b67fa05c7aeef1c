"""When a webhook delivery that was not taken is tried again, and when the sender gives up."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int
    delays_ms: tuple[int, ...]
    """The wait after attempt n is delays_ms[n-1]; the last one repeats (exponential by default)."""

    def __post_init__(self) -> None:
        if self.max_attempts < 1 or not self.delays_ms or min(self.delays_ms) <= 0:
            raise ValueError("need max_attempts >= 1 and at least one positive delay")

    def delay_after(self, attempts: int) -> int | None:
        """The wait before the next attempt once `attempts` failed; None: dead-letter it."""
        if attempts >= self.max_attempts:
            return None
        return self.delays_ms[min(attempts, len(self.delays_ms)) - 1]

    def delays_in_use(self) -> tuple[int, ...]:
        """The delay queues this policy publishes to."""
        return tuple(sorted({d for n in range(1, self.max_attempts) if (d := self.delay_after(n)) is not None}))
