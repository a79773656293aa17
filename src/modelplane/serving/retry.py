"""How long to wait before a retry, and whether a retry may happen at all."""

from __future__ import annotations

import random
import time
from collections.abc import Callable

from modelplane.config.schema import RetryConfig


def backoff(attempt: int, retry_after: float | None, config: RetryConfig, rng: random.Random) -> float | None:
    """Seconds to wait after failed attempt number `attempt` (0-based); None: do not retry this model.

    Exponential backoff with full jitter (uniform in [0, initial·2^attempt], capped), but
    never sooner than the upstream's `retry-after`; a `retry-after` beyond `max_retry_after`
    means the model is out for longer than a serving should wait, so the chain moves on.
    """
    if retry_after is not None and retry_after > config.max_retry_after:
        return None
    wait = rng.uniform(0.0, min(config.max, config.initial * 2**attempt))
    return max(wait, retry_after or 0.0)


class RetryBudget:
    """Retries may add at most `ratio` of the first attempts, plus `min_per_second`.

    A token bucket: each first attempt adds `ratio` of a token, time adds `min_per_second`,
    a retry takes a whole one. During an outage the first attempts all fail, and without
    the budget every one of them would bring its retries along.
    """

    def __init__(self, ratio: float, min_per_second: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.ratio = ratio
        self.min_per_second = min_per_second
        self.capacity = max(10.0, 10.0 * min_per_second)
        self._clock = clock
        self._tokens = self.capacity
        self._updated = clock()

    def deposit(self) -> None:
        self._tokens = min(self.capacity, self._tokens + self.ratio)

    def withdraw(self) -> bool:
        now = self._clock()
        self._tokens = min(self.capacity, self._tokens + (now - self._updated) * self.min_per_second)
        self._updated = now
        if self._tokens < 1.0:
            return False
        self._tokens -= 1.0
        return True
