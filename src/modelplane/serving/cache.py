"""Stages 5 and 10, cache lookup and store: a repeated question costs nothing the second time.

Exact: the key is the tenant, the feature, a fingerprint of the feature's route and output
policy (so a config change to them invalidates its entries), and every parameter of the
body that changes the answer (messages, temperature, tools, response_format, seed, …;
only `stream`, `stream_options` and `user` are left out). Semantic: the last user turn is
embedded and compared by meaning, inside a partition that holds everything else exactly
(tenant, feature, fingerprint, earlier turns, system prompt, parameters); the guard refuses
look-alikes (negation, numbers, names). Tenants never share an entry.

Only whole, successful, validated model answers are stored: never errors, rate-limit
answers, deterministic fallbacks, invalid outputs or cut streams. Lookups are served from
memory (bounded in bytes, LRU); entries expire after the feature's `ttl`. Behind memory, a
`CacheStore` (cache/store.py) persists entries to SQLite or shares them through Redis.

`CacheLookup.reason` is what the ledger's `cache_reason` records, one of:
`exact`, `semantic` (hits); `miss` (exact only, no entry); `no_entries` (the semantic
partition is empty); `below_threshold`; `guard:<why>` (negation, number, quoted, entity,
antonym, question, direction: the guard refused a look-alike); `not_cacheable` (the policy
skips this request, e.g. temperature ≠ 0 under `when: deterministic`); `embedder_failed`
(a provider embedder did not answer: a miss, the request goes on).
"""

from __future__ import annotations

import hashlib
import logging
import math
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

import orjson

from modelplane.cache.assemble import Collecting
from modelplane.cache.store import SEP, CacheStore, Change, FeatureUsage, Purge, StoredEntry, owned_by
from modelplane.config.schema import CacheConfig, FeatureConfig
from modelplane.errors import ModelplaneError
from modelplane.ledger.records import ServingRecord
from modelplane.providers.base import Stream
from modelplane.serving.state import Serving

if TYPE_CHECKING:
    # numpy and the embedder load only when a feature turns the semantic cache on.
    from modelplane.cache.index import Vector
    from modelplane.cache.semantic import Decision, SemanticCache
    from modelplane.embeddings.base import AsyncEmbedder, Embedder

log = logging.getLogger("modelplane.cache")

_NOT_IN_KEY = ("stream", "stream_options", "user")
_WARN_EVERY = 60.0


@dataclass(frozen=True, slots=True)
class Cached:
    """A stored answer and what producing it cost."""

    body: dict[str, Any]
    cost_usd: float | None
    model: str
    expires_at: float  # unix seconds
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
    reason: str | None = None  # for the ledger; see the module docstring
    vector: Vector | None = None  # the question's embedding, reused by the store step


UNCACHED = CacheLookup(None, None, None, None)  # the hot path's answer for features without a cache
_NOT_CACHEABLE = CacheLookup(None, None, None, None, reason="not_cacheable")


class ResponseCache:
    """The gateway's response cache, shared by every feature that turns it on.

    `embedder` builds the semantic cache's embedder on first use; `embedder_label` names it
    in persisted entries. `backing` (None: memory only) persists or shares entries.
    """

    def __init__(
        self,
        max_bytes: int,
        embedder: Callable[[], Embedder | AsyncEmbedder],
        *,
        embedder_label: str = "wordllama",
        backing: CacheStore | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.max_bytes = max_bytes
        self.backing = backing
        self.embedder_label = embedder_label
        self._exact: OrderedDict[str, Cached] = OrderedDict()
        self._bytes = 0
        self._make_embedder = embedder
        self._embedder: Embedder | AsyncEmbedder | None = None
        self._semantic: SemanticCache[Cached] | None = None
        self._clock = clock
        self._warned_at = -math.inf

    def set_embedder(self, make: Callable[[], Embedder | AsyncEmbedder]) -> None:
        """Build the embedder with `make` on first use (the gateway's, which can reach configured models)."""
        self._make_embedder, self._embedder = make, None

    @property
    def backend(self) -> str:
        return "memory" if self.backing is None else self.backing.name

    async def start(self) -> None:
        """Load what the store kept (a restart, other workers), then follow its changes."""
        if self.backing is not None:
            await self.backing.start(self.apply)

    async def aclose(self) -> None:
        if self.backing is not None:
            await self.backing.aclose()

    async def lookup(self, tenant: str, feature_name: str, feature: FeatureConfig, body: dict[str, Any]) -> CacheLookup:
        policy = feature.cache
        if policy is None:
            return UNCACHED
        if not cacheable(policy, body):
            return _NOT_CACHEABLE
        fingerprint = feature_fingerprint(feature)
        exact_key = None
        if policy.exact:
            exact_key = SEP.join((tenant, feature_name, _digest(fingerprint, _canonical(body))))
            if (entry := await self._exact_find(exact_key)) is not None:
                return CacheLookup(CacheHit("exact", entry), exact_key, None, None, reason="exact")
        split = _split_question(body)
        if policy.semantic is None or split is None:
            return CacheLookup(None, exact_key, None, None, reason="miss")
        from modelplane.cache.semantic import partition_key
        from modelplane.embeddings.base import embed_async

        question, context = split
        partition = partition_key(tenant, feature_name, _digest(fingerprint, context))
        try:
            vector = (await embed_async(self.embedder, [question]))[0]
        except (ModelplaneError, ValueError) as exc:  # a provider embedder failed: a miss, never a failed request
            self._warn(f"the cache's embedder failed, answering miss: {exc}")
            return CacheLookup(None, exact_key, None, None, reason="embedder_failed")
        semantic = self.semantic(len(vector))
        if len(vector) != semantic.index.dim:
            self._warn(f"the embedder answers {len(vector)} dimensions, the cache holds {semantic.index.dim}")
            return CacheLookup(None, exact_key, None, None, reason="miss")
        if policy.semantic.threshold is None:  # the embedder's default: cache/semantic.py
            semantic.thresholds.pop(feature_name, None)
        else:
            semantic.thresholds[feature_name] = policy.semantic.threshold
        decision = semantic.decide(partition, question, feature=feature_name, vector=vector)
        reason = _reason(decision)
        hit = None
        if decision.hit is not None and decision.hit.answer.expires_at > self._clock():
            hit = CacheHit("semantic", decision.hit.answer, decision.hit.score)
        elif decision.hit is not None:
            reason = "no_entries"
        return CacheLookup(hit, exact_key, partition, question, decision.score, reason, vector)

    def store(
        self, found: CacheLookup, policy: CacheConfig, body: dict[str, Any], cost: float | None, model: str
    ) -> None:
        """File a validated, successful answer under the keys its lookup computed."""
        if found.exact_key is None and found.partition is None:
            return
        raw = orjson.dumps(body)
        expires_at = self._clock() + policy.ttl
        if found.exact_key is not None:
            self._exact_put(found.exact_key, Cached(body, cost, model, expires_at, len(raw)))
            if self.backing is not None:
                self.backing.put(StoredEntry("exact", found.exact_key, raw, cost, model, expires_at))
        if found.partition is not None and found.question is not None and found.vector is not None:
            entry = StoredEntry(
                "semantic",
                found.partition,
                raw,
                cost,
                model,
                expires_at,
                found.question,
                found.vector.tobytes(),
                self.embedder_label,
            )
            self._semantic_put(entry, body)
            if self.backing is not None:
                self.backing.put(entry)

    def keep_stream(
        self, found: CacheLookup, policy: CacheConfig | None, serving: Serving, reply: Stream
    ) -> tuple[Stream, Callable[[ServingRecord], None] | None]:
        """A streamed answer passes through unchanged and is stored once it ended normally, never cut."""
        if policy is None or (found.exact_key is None and found.partition is None):
            return reply, None
        collecting = Collecting(reply)

        def done(record: ServingRecord) -> None:
            body = collecting.answer()
            if body is not None and storable(serving) and serving.model is not None:
                self.store(found, policy, body, record.cost_usd, serving.model)

        return collecting, done

    def apply(self, change: Change) -> None:
        """A change read from the store: an entry stored elsewhere (or before a restart), or a purge."""
        if isinstance(change, Purge):
            self._purge_memory(change.tenant, change.feature)
            return
        if change.expires_at <= self._clock():
            return
        body = orjson.loads(change.body)
        if change.kind == "exact":
            self._exact_put(
                change.key, Cached(body, change.cost_usd, change.model, change.expires_at, len(change.body))
            )
        elif change.embedder == self.embedder_label and change.vector and change.question is not None:
            self._semantic_put(change, body)

    async def purge(self, *, tenant: str | None = None, feature: str | None = None) -> int:
        """Drop entries of a tenant and/or feature (all when neither is given) here and in the store.

        Returns how many entries this gateway held (the store's count when it holds more)."""
        held = self._purge_memory(tenant, feature)
        if self.backing is None:
            return held
        return max(held, await self.backing.purge(tenant, feature))

    async def usage(self) -> list[FeatureUsage]:
        """Entries and bytes per feature held in this gateway's memory."""
        usage: dict[str, FeatureUsage] = {}

        def count(key: str, kind: str, size: int) -> None:
            item = usage.setdefault(key.split(SEP, 2)[1], FeatureUsage(key.split(SEP, 2)[1]))
            item.entries += 1
            item.bytes += size
            item.by_kind[kind] = item.by_kind.get(kind, 0) + 1

        for key, cached in self._exact.items():
            count(key, "exact", cached.size)
        if self._semantic is not None:
            for partition, size in self._semantic.index.sizes():
                count(partition, "semantic", size)
        return sorted(usage.values(), key=lambda u: u.feature)

    @property
    def embedder(self) -> Embedder | AsyncEmbedder:
        if self._embedder is None:
            self._embedder = self._make_embedder()
        return self._embedder

    def semantic(self, dim: int) -> SemanticCache[Cached]:
        """The semantic index, made on first use for vectors of `dim` components.

        With the embedder the shipped learned scorer was trained on (wordllama-256), hits are
        decided by the scorer; with any other, by cosine and the guard's rules."""
        if self._semantic is None:
            from modelplane.cache.pairscore import shipped_scorer
            from modelplane.cache.semantic import SemanticCache
            from modelplane.embeddings.base import is_async

            embedder = self.embedder
            local = None if is_async(embedder) else cast("Embedder", embedder)
            scorer = None if local is None else shipped_scorer(local.name, local.embed)
            self._semantic = SemanticCache(
                _VectorsGiven(dim), max_bytes=self.max_bytes, scorer=scorer, clock=self._clock
            )
        return self._semantic

    def _semantic_put(self, entry: StoredEntry, body: dict[str, Any]) -> None:
        import numpy as np

        vector = np.frombuffer(entry.vector or b"", np.float32)
        semantic = self.semantic(len(vector))
        if len(vector) != semantic.index.dim or entry.question is None:
            return  # made by an embedder of another width: not comparable
        cached = Cached(body, entry.cost_usd, entry.model, entry.expires_at, len(entry.body))
        ttl = entry.expires_at - self._clock()
        semantic.store(entry.key, entry.question, cached, answer_bytes=len(entry.body), ttl=ttl, vector=vector)

    def _warn(self, message: str) -> None:
        now = time.monotonic()
        if now - self._warned_at >= _WARN_EVERY:
            self._warned_at = now
            log.warning(message)

    async def _exact_find(self, key: str) -> Cached | None:
        entry = self._exact_get(key)
        if entry is None and self.backing is not None:
            stored = await self.backing.get_exact(key)
            if stored is not None and stored.expires_at > self._clock():
                self.apply(stored)
                entry = self._exact_get(key)
        return entry

    def _purge_memory(self, tenant: str | None, feature: str | None) -> int:
        doomed = [k for k in self._exact if owned_by(k, tenant, feature)]
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


class _VectorsGiven:
    """The semantic cache's embedder slot: this cache always hands it vectors (embedded asynchronously)."""

    name = "given"

    def __init__(self, dim: int) -> None:
        self.dim = dim

    def embed(self, texts: list[str]) -> Any:
        raise RuntimeError("the response cache passes vectors to the semantic cache")


def storable(serving: Serving) -> bool:
    """Only a model's successful answer is stored: never an error or the deterministic fallback."""
    return serving.status == "ok" and serving.model not in (None, "deterministic")


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


def _reason(decision: Decision[Cached]) -> str:
    """The semantic decision in the ledger's words."""
    reason = decision.reason
    return {"hit": "semantic", "empty": "no_entries"}.get(reason, reason.replace("-", "_"))


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
