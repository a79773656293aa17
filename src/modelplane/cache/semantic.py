"""The semantic cache: a question close enough in meaning, in the same partition, gets the stored answer.

A hit needs the same partition (tenant + feature + a hash of everything that must match
exactly: earlier turns, system prompt, answer-changing parameters — see `partition_key`),
and for the candidate picked among the nearest (by cosine and the words both questions use):
with a `scorer` (cache/pairscore.py: the default embedder, wordllama-256), a learned
probability of asking the same question at or above the feature's threshold; without one
(any other embedder), a cosine at or above the threshold and the guard's agreement that the
two questions do not differ in negation, numbers, entities and the like. cache/scoring.py
says how and why. Every lookup returns a `Decision` with the score and its reason, so the
ledger can record why a near-miss missed.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Generic, TypeVar

import numpy as np

from modelplane.cache.guard import QuestionFacts, compare, facts
from modelplane.cache.index import IndexEntry, Vector, VectorIndex
from modelplane.cache.pairscore import PairScorer
from modelplane.cache.scoring import CANDIDATES, judge, rank, weigh
from modelplane.embeddings.base import Embedder

__all__ = ["COSINE_THRESHOLD", "LEARNED_THRESHOLD", "Decision", "Hit", "SemanticCache", "partition_key"]

T = TypeVar("T")

LEARNED_THRESHOLD = 0.55
"""The default bar on the learned P(same question), with the shipped scorer (wordllama-256).

Chosen on bench/semantic_cache.py's tune halves (0.01 steps): the highest whose tune half serves
at least 410 of its 500 paraphrases correctly (on course for the 800 of 999 target, with a 2.5 %
margin); bench/README.md has the trade-off."""
COSINE_THRESHOLD = 0.73
"""The default bar on the cosine with any other embedder (cosine + the guard's rules), chosen the same way."""


def default_threshold(embedder: str) -> float:
    """The bar a feature's semantic cache has when its config sets none, for a `cache.embedder`
    value: the learned scorer's with wordllama-256 (the default), else the cosine's."""
    kind, _, dim = embedder.partition(":")
    return LEARNED_THRESHOLD if kind == "wordllama" and dim in ("", "256") else COSINE_THRESHOLD


_SEP = "\x1f"
# What a stored question's guard facts and bookkeeping cost in memory, beyond its text (measured by
# the benchmark's RSS reading: about 2.5 KB per entry for Quora-length questions).
_FACTS_BYTES = 2500


def partition_key(tenant: str, feature: str, context: str | bytes = b"") -> str:
    """The partition a question lives in: tenant, feature and a hash of what must match exactly."""
    data = context.encode() if isinstance(context, str) else context
    return f"{tenant}{_SEP}{feature}{_SEP}{hashlib.blake2b(data, digest_size=16).hexdigest()}"


@dataclass(frozen=True, slots=True)
class _Stored(Generic[T]):
    question: str
    facts: QuestionFacts
    answer: T
    expires_at: float | None


@dataclass(frozen=True, slots=True)
class Hit(Generic[T]):
    """A cached answer served for a new question, with the evidence for serving it."""

    answer: T
    question: str  # the cached question it was stored under
    score: float  # the learned P(same question) with a scorer, else the cosine to the cached question


@dataclass(frozen=True, slots=True)
class Decision(Generic[T]):
    """What a lookup found: a hit, or the best score and why it was not served."""

    hit: Hit[T] | None
    score: float | None  # the picked candidate's P(same question) or cosine, as Hit.score (None: no entries)
    threshold: float
    reason: str  # `semantic` (hit), `no_entries`, `below_threshold` or `guard:<why>`: see cache/scoring.py


class SemanticCache(Generic[T]):
    """Answers by meaning, within a partition, bounded in bytes (LRU), with per-feature thresholds.

    `scorer` (the learned one, for the embedder it was trained on) decides hits when given;
    `default_threshold` then defaults to LEARNED_THRESHOLD, else to COSINE_THRESHOLD.
    """

    def __init__(
        self,
        embedder: Embedder,
        *,
        max_bytes: int = 256 * 2**20,
        default_threshold: float | None = None,
        thresholds: Mapping[str, float] | None = None,
        scorer: PairScorer | None = None,
        guard: bool = True,
        lexical: bool = True,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.embedder = embedder
        self.index: VectorIndex[_Stored[T]] = VectorIndex(embedder.dim, max_bytes=max_bytes)
        self.scorer = scorer
        if default_threshold is None:
            default_threshold = COSINE_THRESHOLD if scorer is None else LEARNED_THRESHOLD
        self.default_threshold = default_threshold
        self.thresholds = dict(thresholds or {})
        self.guard = guard  # False: no guard rules (for comparison only; the scorer always reads them)
        self.lexical = lexical  # False: pick the nearest by cosine alone (for comparison only)
        self._clock = clock

    def threshold(self, feature: str) -> float:
        """The similarity a hit needs for this feature."""
        return self.thresholds.get(feature, self.default_threshold)

    def lookup(self, partition: str, question: str, *, feature: str = "") -> Hit[T] | None:
        """The cached answer for a question like this one in this partition, or None."""
        return self.decide(partition, question, feature=feature).hit

    def decide(self, partition: str, question: str, *, feature: str = "", vector: Vector | None = None) -> Decision[T]:
        """Look up with the full decision; pass `vector` when the question is already embedded."""
        threshold = self.threshold(feature)
        if vector is None:
            vector = self.embedder.embed([question])[0]
        now = self._clock()
        found = [
            (entry, cosine)
            for entry, cosine in self.index.search(partition, vector, k=CANDIDATES, min_score=-1.0)
            if not self._expired(entry, now)
        ]
        if not found:
            return Decision(None, None, threshold, "no_entries")
        entry, cosine = found[0]
        # No pick can do better than the nearest: below the bar (or the scorer's floor, where
        # P is 0 by definition) skip reading the question.
        if cosine < (threshold if self.scorer is None else self.scorer.floor):
            return Decision(None, cosine if self.scorer is None else 0.0, threshold, "below_threshold")
        query = facts(question)
        if self.lexical and len(found) > 1:
            entry, cosine = max(found, key=lambda candidate: rank(candidate[1], query, candidate[0].value.facts))
        cached = entry.value
        if self.scorer is None:
            judgement = judge(cosine, threshold, query, cached.facts, guard=self.guard)
        else:
            verdict = compare(query, cached.facts)
            probability = self.scorer.score(question, query, cached.question, cached.facts, cosine, verdict)
            judgement = weigh(probability, threshold, verdict)
        if not judgement.accept:
            return Decision(None, judgement.score, threshold, judgement.reason)
        self.index.touch(entry)
        hit = Hit(cached.answer, cached.question, judgement.score)
        return Decision(hit, judgement.score, threshold, judgement.reason)

    def store(
        self,
        partition: str,
        question: str,
        answer: T,
        *,
        answer_bytes: int = 0,
        ttl: float | None = None,
        vector: Vector | None = None,
    ) -> None:
        """Remember an answer; `answer_bytes` is its size, charged against the byte bound."""
        if vector is None:
            vector = self.embedder.embed([question])[0]
        expires_at = None if ttl is None else self._clock() + ttl
        stored = _Stored(question, facts(question), answer, expires_at)
        self.index.add(
            partition,
            np.asarray(vector, np.float32),
            stored,
            payload_bytes=answer_bytes + len(question.encode()) + _FACTS_BYTES,
        )

    def purge(self, *, tenant: str | None = None, feature: str | None = None) -> int:
        """Drop the entries of a tenant, a feature, both, or (neither given) all; returns how many."""

        def doomed(partition: str) -> bool:
            entry_tenant, entry_feature, _ = partition.split(_SEP, 2)
            return tenant in (None, entry_tenant) and feature in (None, entry_feature)

        return self.index.drop_partitions(doomed)

    def _expired(self, entry: IndexEntry[_Stored[T]], now: float) -> bool:
        expires_at = entry.value.expires_at
        if expires_at is not None and now >= expires_at:
            self.index.remove(entry)
            return True
        return False
