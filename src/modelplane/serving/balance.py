"""Choosing among a model's deployments: weighted, latency-aware, skipping open breakers.

Power of two choices over peak-EWMA latency (as in Finagle and Linkerd): draw two
deployments at random in proportion to their weights and keep the first drawn unless the
second's expected wait — the EWMA of its latency, which jumps up at once on a slow answer
and decays slowly, times the calls in flight plus one — is clearly lower. Deployments
that answer alike thus share the traffic by weight; a slow or loaded one loses its share.
A deployment with no answers yet looks free, so it gets tried.
"""

from __future__ import annotations

import math
import random
import time
from dataclasses import dataclass

from modelplane.serving.runtime import Deployment

_DECAY_SECONDS = 10.0  # how fast a latency spike is forgotten
_FAILURE_PENALTY = 1.0  # seconds: what a failed call counts as in the latency estimate
_CLEARLY = 0.8  # the second draw wins only when its expected wait is under 80 % of the first's


@dataclass(slots=True)
class _Stats:
    ewma: float = 0.0
    updated: float = 0.0
    in_flight: int = 0


class Balancer:
    """Per-deployment latency and load, kept by the gateway so a reload keeps them."""

    def __init__(self, rng: random.Random | None = None) -> None:
        self._stats: dict[str, _Stats] = {}
        self._rng = rng or random.Random()

    def order(self, deployments: tuple[Deployment, ...]) -> list[Deployment]:
        """The deployments in the order to try them: the P2C choice first, the rest by cost."""
        if len(deployments) == 1:
            return [deployments[0]]
        first, second = self._two(deployments)
        best = second if self._cost(second) < _CLEARLY * self._cost(first) else first
        rest = sorted((d for d in deployments if d is not best), key=self._cost)
        return [best, *rest]

    def _two(self, deployments: tuple[Deployment, ...]) -> tuple[Deployment, Deployment]:
        weights = [d.weight for d in deployments]
        first = self._rng.choices(deployments, weights)[0]
        others = [d for d in deployments if d is not first]
        second = self._rng.choices(others, [d.weight for d in others])[0]
        return first, second

    def _cost(self, deployment: Deployment) -> float:
        stats = self._stats.get(deployment.key)
        if stats is None:
            return 0.0
        # An estimate nobody refreshed fades, so a deployment that was slow once is tried again.
        fade = math.exp(-(time.monotonic() - stats.updated) / _DECAY_SECONDS) if stats.updated else 1.0
        return stats.ewma * fade * (stats.in_flight + 1)

    def started(self, deployment: Deployment) -> None:
        self._stat(deployment.key).in_flight += 1

    def finished(self, deployment: Deployment, latency: float, ok: bool = True) -> None:
        stats = self._stat(deployment.key)
        if not ok:
            # A fast failure must not make a deployment look fast.
            latency = max(latency, _FAILURE_PENALTY)
        stats.in_flight = max(0, stats.in_flight - 1)
        now = time.monotonic()
        if latency > stats.ewma:
            stats.ewma = latency  # peak: a slow answer counts at once
        else:
            weight = math.exp(-(now - stats.updated) / _DECAY_SECONDS) if stats.updated else 0.0
            stats.ewma = stats.ewma * weight + latency * (1.0 - weight)
        stats.updated = now

    def _stat(self, key: str) -> _Stats:
        stats = self._stats.get(key)
        if stats is None:
            stats = self._stats[key] = _Stats()
        return stats
