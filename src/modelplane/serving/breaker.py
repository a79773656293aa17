"""Circuit breakers, one per model deployment: closed → open → half-open → closed.

Closed, every call goes through and its outcome lands in a sliding window of one-second
buckets. When the window holds at least `min_requests` outcomes and the share of failures
reaches `failure_rate`, the breaker opens: no traffic for `cooldown` seconds. Then exactly
one call, the probe, is let through (half-open); its success closes the breaker, its failure
opens it again. A probe that never reports back (its serving was cancelled) is replaced
after another cooldown.

The state lives in a `BreakerBackend`: in-process by default, or in Redis so every gateway
worker sees the same breakers (see `breaker_redis.py`). Breakers belong to the gateway,
not to a config, so a reload keeps their state.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol

from modelplane.config.schema import BreakerConfig
from modelplane.errors import ErrorClass

# Failures that say something about the deployment; a bad request says something about the caller.
DEPLOYMENT_FAULTS = frozenset(
    {
        ErrorClass.RATE_LIMIT,
        ErrorClass.TIMEOUT,
        ErrorClass.SERVER_ERROR,
        ErrorClass.CONNECTION,
        ErrorClass.BAD_RESPONSE,
        ErrorClass.STREAM_CUT,
        ErrorClass.AUTH,
    }
)


class State(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class Permit(StrEnum):
    ALLOW = "allow"
    PROBE = "probe"  # the one call let through a half-open breaker
    DENY = "deny"


@dataclass(frozen=True, slots=True)
class BreakerView:
    """What `/admin/health` and `/metrics` show of one breaker."""

    key: str
    state: State
    requests: int
    failures: int
    opened_at: float | None


class BreakerBackend(Protocol):
    config: BreakerConfig

    async def acquire(self, key: str) -> Permit:
        """May a call go to deployment `key` now? Claims the probe when the cooldown is over."""

    def record(self, key: str, ok: bool, permit: Permit) -> None:
        """The outcome of a call made under `permit`; never waits (a shared backend sends it behind)."""

    async def retry_in(self, key: str) -> float | None:
        """Seconds until the breaker of `key` lets its next probe through; None when it is closed."""

    async def views(self) -> list[BreakerView]: ...

    async def aclose(self) -> None: ...


def probe_in(state: State, opened_at: float | None, probe_since: float | None, cooldown: float, now: float) -> float:
    """Seconds until a breaker that is not closed lets a probe through (an open one after its cooldown;
    a half-open one when its probe in flight is overdue)."""
    since = opened_at if state is State.OPEN else probe_since
    return 0.0 if since is None else max(0.0, since + cooldown - now)


@dataclass(slots=True)
class _Circuit:
    state: State = State.CLOSED
    buckets: deque[list[float]] = field(default_factory=deque)  # [second, requests, failures]
    opened_at: float | None = None
    probe_since: float | None = None

    def counts(self, now: float, window: float) -> tuple[int, int]:
        while self.buckets and self.buckets[0][0] <= now - window:
            self.buckets.popleft()
        return int(sum(b[1] for b in self.buckets)), int(sum(b[2] for b in self.buckets))

    def add(self, now: float, ok: bool) -> None:
        second = float(int(now))
        if not self.buckets or self.buckets[-1][0] != second:
            self.buckets.append([second, 0, 0])
        bucket = self.buckets[-1]
        bucket[1] += 1
        bucket[2] += 0 if ok else 1


class LocalBreakers:
    """Breakers in this process's memory: right for one worker, or when workers need not agree."""

    def __init__(self, config: BreakerConfig, clock: Callable[[], float] = time.time) -> None:
        self.config = config
        self._now = clock
        self._circuits: dict[str, _Circuit] = {}

    def _circuit(self, key: str) -> _Circuit:
        circuit = self._circuits.get(key)
        if circuit is None:
            circuit = self._circuits[key] = _Circuit()
        return circuit

    async def acquire(self, key: str) -> Permit:
        circuit = self._circuits.get(key)
        if circuit is None or circuit.state is State.CLOSED:
            return Permit.ALLOW
        now = self._now()
        cooldown = self.config.cooldown
        if circuit.state is State.OPEN and circuit.opened_at is not None and now - circuit.opened_at >= cooldown:
            circuit.state, circuit.probe_since = State.HALF_OPEN, now
            return Permit.PROBE
        if (
            circuit.state is State.HALF_OPEN
            and circuit.probe_since is not None
            and now - circuit.probe_since >= cooldown
        ):
            circuit.probe_since = now  # the last probe never reported back
            return Permit.PROBE
        return Permit.DENY

    def record(self, key: str, ok: bool, permit: Permit) -> None:
        circuit = self._circuit(key)
        now = self._now()
        if permit is Permit.PROBE:
            if ok:
                circuit.state, circuit.opened_at, circuit.probe_since = State.CLOSED, None, None
                circuit.buckets.clear()
            else:
                circuit.state, circuit.opened_at, circuit.probe_since = State.OPEN, now, None
            return
        circuit.add(now, ok)
        # Counting also prunes, so the buckets stay within the window under all-success traffic.
        requests, failures = circuit.counts(now, self.config.window)
        tripped = requests >= self.config.min_requests and failures >= self.config.failure_rate * requests
        if circuit.state is State.CLOSED and not ok and tripped:
            circuit.state, circuit.opened_at = State.OPEN, now

    async def retry_in(self, key: str) -> float | None:
        circuit = self._circuits.get(key)
        if circuit is None or circuit.state is State.CLOSED:
            return None
        return probe_in(circuit.state, circuit.opened_at, circuit.probe_since, self.config.cooldown, self._now())

    async def views(self) -> list[BreakerView]:
        now = self._now()
        views = []
        for key, circuit in sorted(self._circuits.items()):
            requests, failures = circuit.counts(now, self.config.window)
            views.append(BreakerView(key, circuit.state, requests, failures, circuit.opened_at))
        return views

    async def aclose(self) -> None:
        return None
