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
        return None if attempts >= self.max_attempts else self.backoff(attempts)

    def backoff(self, attempts: int) -> int:
        """The current wait of a delivery with `attempts` failed, whether or not another may follow."""
        return self.delays_ms[min(max(attempts, 1), len(self.delays_ms)) - 1]

    def delays_in_use(self) -> tuple[int, ...]:
        """The delay queues this policy publishes to (retries and postponements)."""
        return tuple(sorted({self.backoff(n) for n in range(self.max_attempts)}))
