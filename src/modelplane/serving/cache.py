"""Stages 5 and 10, cache lookup and store: a repeated question costs nothing the second time.

Exact: the key is the tenant, the feature, a fingerprint of the feature's route and output
policy (so a config change to them invalidates its entries), and every parameter of the
body that changes the answer (messages, temperature, tools, response_format, seed, …;
only `stream`, `stream_options` and `user` are left out). Semantic: the last user turn is
embedded and compared by meaning, inside a partition that holds everything else exactly
(tenant, feature, fingerprint, earlier turns, system prompt, parameters); the guard refuses
look-alikes (negation, numbers, names). Tenants never share an entry.

Only whole, successful, validated model answers are stored: never errors, rate-limit
answers, deterministic fallbacks, invalid outputs or cut streams. In-process, bounded in
bytes (LRU); entries expire after the feature's `ttl`.
"""

from __future__ import annotations

import hashlib
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson

from modelplane.config.schema import CacheConfig, FeatureConfig

if TYPE_CHECKING:
    # numpy and the embedder load only when a feature turns the semantic cache on.
    from modelplane.cache.semantic import SemanticCache
    from modelplane.embeddings.base import Embedder

_NOT_IN_KEY = ("stream", "stream_options", "user")
_SEP = "\x1f"  # between tenant, feature and digest in an exact key


@dataclass(frozen=True, slots=True)
class Cached:
    """A stored answer and what producing it cost."""

    body: dict[str, Any]
    cost_usd: float | None
    model: str
    expires_at: float
    size: int


@dataclass(frozen=True, slots=True)
class CacheHit:
    kind: str  # "exact" or "semantic"
    entry: Cached
    score: float | None = None


@dataclass(frozen=True, slots=True)
class CacheLookup:
    """What the lookup found, and what the store step needs to file the answer under."""

    hit: CacheHit | None
    exact_key: str | None
    partition: str | None
    question: str | None
    best_score: float | None = None


_UNCACHED = CacheLookup(None, None, None, None)  # the hot path's answer for features without a cache


class ResponseCache:
    """The gateway's response cache, shared by every feature that turns it on."""

    def __init__(
        self, max_bytes: int, embedder: Callable[[], Embedder], clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.max_bytes = max_bytes
        self._exact: OrderedDict[str, Cached] = OrderedDict()
        self._bytes = 0
        self._embedder = embedder
        self._semantic: SemanticCache[Cached] | None = None
        self._clock = clock

    def semantic(self) -> SemanticCache[Cached]:
        if self._semantic is None:
            from modelplane.cache.semantic import SemanticCache

            self._semantic = SemanticCache(self._embedder(), max_bytes=self.max_bytes)
        return self._semantic

    def lookup(self, tenant: str, feature_name: str, feature: FeatureConfig, body: dict[str, Any]) -> CacheLookup:
        policy = feature.cache
        if policy is None or not cacheable(policy, body):
            return _UNCACHED
        fingerprint = feature_fingerprint(feature)
        exact_key = None
        if policy.exact:
            exact_key = _SEP.join((tenant, feature_name, _digest(fingerprint, _canonical(body))))
        if exact_key is not None and (entry := self._exact_get(exact_key)) is not None:
            return CacheLookup(CacheHit("exact", entry), exact_key, None, None)
        split = _split_question(body)
        if policy.semantic is None or split is None:
            return CacheLookup(None, exact_key, None, None)
        from modelplane.cache.semantic import partition_key

        question, context = split
        partition = partition_key(tenant, feature_name, _digest(fingerprint, context))
        semantic = self.semantic()
        semantic.thresholds[feature_name] = policy.semantic.threshold
        decision = semantic.decide(partition, question, feature=feature_name)
        if decision.hit is not None and decision.hit.answer.expires_at > self._clock():
            return CacheLookup(
                CacheHit("semantic", decision.hit.answer, decision.hit.score),
                exact_key,
                partition,
                question,
                decision.score,
            )
        return CacheLookup(None, exact_key, partition, question, decision.score)

    def store(
        self, found: CacheLookup, policy: CacheConfig, body: dict[str, Any], cost: float | None, model: str
    ) -> None:
        if found.exact_key is None and found.partition is None:
            return
        size = len(orjson.dumps(body))
        entry = Cached(body, cost, model, self._clock() + policy.ttl, size)
        if found.exact_key is not None:
            self._exact_put(found.exact_key, entry)
        if found.partition is not None and found.question is not None:
            self.semantic().store(found.partition, found.question, entry, answer_bytes=size, ttl=policy.ttl)

    def purge(self, *, tenant: str | None = None, feature: str | None = None) -> int:
        """Drop entries of a tenant and/or feature (all when neither is given); returns how many."""
        doomed = [k for k in self._exact if _owned_by(k, tenant, feature)]
        for key in doomed:
            self._bytes -= self._exact.pop(key).size
        semantic = self._semantic.purge(tenant=tenant, feature=feature) if self._semantic else 0
        return len(doomed) + semantic

    def _exact_get(self, key: str) -> Cached | None:
        entry = self._exact.get(key)
        if entry is None:
            return None
        if entry.expires_at <= self._clock():
            self._bytes -= self._exact.pop(key).size
            return None
        self._exact.move_to_end(key)
        return entry

    def _exact_put(self, key: str, entry: Cached) -> None:
        old = self._exact.pop(key, None)
        if old is not None:
            self._bytes -= old.size
        self._exact[key] = entry
        self._bytes += entry.size
        while self._bytes > self.max_bytes and self._exact:
            self._bytes -= self._exact.popitem(last=False)[1].size


def cacheable(policy: CacheConfig, body: dict[str, Any]) -> bool:
    """`when: deterministic` caches only requests at temperature 0 (one answer, n == 1)."""
    if body.get("n", 1) != 1:
        return False
    return policy.when == "always" or body.get("temperature") == 0


def feature_fingerprint(feature: FeatureConfig) -> str:
    """Changes when the feature's route or output policy changes, so their old answers stop matching."""
    return hashlib.sha256(
        orjson.dumps([feature.route.model_dump(mode="json"), feature.output and feature.output.model_dump(mode="json")])
    ).hexdigest()[:16]


def _canonical(body: dict[str, Any]) -> bytes:
    return orjson.dumps({k: v for k, v in body.items() if k not in _NOT_IN_KEY}, option=orjson.OPT_SORT_KEYS)


def _split_question(body: dict[str, Any]) -> tuple[str, bytes] | None:
    """The last user turn (plain text only) and everything else that must match exactly."""
    messages = body.get("messages") or []
    last = messages[-1] if messages else None
    if not isinstance(last, dict) or last.get("role") != "user" or not isinstance(last.get("content"), str):
        return None
    rest = {k: v for k, v in body.items() if k not in (*_NOT_IN_KEY, "messages")}
    return last["content"], orjson.dumps([messages[:-1], rest], option=orjson.OPT_SORT_KEYS)


def _digest(*parts: str | bytes) -> str:
    hasher = hashlib.sha256()
    for part in parts:
        hasher.update(part.encode() if isinstance(part, str) else part)
        hasher.update(b"\x1f")
    return hasher.hexdigest()


def _owned_by(key: str, tenant: str | None, feature: str | None) -> bool:
    key_tenant, key_feature, _ = key.split(_SEP, 2)
    return tenant in (None, key_tenant) and feature in (None, key_feature)
