"""How often and how long after a transient failure a recipient is tried again."""

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

    def can_retry(self, attempt: int) -> bool:
        return attempt < self.max_attempts

    def delay_after(self, attempt: int) -> int:
        return self.delays_ms[min(attempt, len(self.delays_ms)) - 1]

    def delays_in_use(self) -> tuple[int, ...]:
        """The delay queues this policy publishes to."""
        return tuple(sorted({self.delay_after(n) for n in range(1, self.max_attempts)}))
