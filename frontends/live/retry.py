"""How long to wait before trying a failed call again: exponential backoff with jitter.

The engine retries what the platform did not take (a network error, a 5xx, a request that
hung) with the newest content, after ``next(backoff)`` seconds: ``min_delay`` first, then
doubling up to ``max_delay``, each drawn around its value so that many rooms failing
together do not retry in step. A success resets it. (A platform's own "retry after" is obeyed
through ``pacing`` instead.)
"""

from __future__ import annotations

from dataclasses import dataclass
from random import normalvariate


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    min_delay: float
    max_delay: float
    factor: float = 2.0
    jitter: float | None = None  # standard deviation; None: a tenth of min_delay

    def __post_init__(self) -> None:
        if self.max_delay <= self.min_delay:
            raise ValueError("max_delay must be more than min_delay")
        if self.factor <= 1:
            raise ValueError("factor must be more than 1")


class Backoff:
    """The delays of one run of failures, as an iterator."""

    def __init__(self, policy: RetryPolicy) -> None:
        self.policy = policy
        self.jitter = policy.min_delay / 10 if policy.jitter is None else policy.jitter
        self.counter = 0  # failures since the last reset
        self._next = policy.min_delay

    def __iter__(self) -> Backoff:
        return self

    def __next__(self) -> float:
        current = self._next
        self._next = normalvariate(min(current * self.policy.factor, self.policy.max_delay),
                                   self.jitter)
        self.counter += 1
        return current

    def reset(self) -> None:
        self.counter = 0
        self._next = self.policy.min_delay
