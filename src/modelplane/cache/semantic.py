"""The semantic cache: a question close enough in meaning, in the same partition, gets the stored answer.

A hit needs all of: the same partition (tenant + feature + a hash of everything that must
match exactly: earlier turns, system prompt, answer-changing parameters — see
`partition_key`), cosine similarity at or above the feature's threshold for the candidate
picked among the nearest (by cosine and the words both questions use: cache/scoring.py says
how and why), and the guard's agreement that the two questions do not differ in negation,
numbers, entities and the like. Every lookup returns a `Decision` with the score and its
reason, so the ledger can record why a near-miss missed.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Generic, TypeVar

import numpy as np

from modelplane.cache.guard import QuestionFacts, facts
from modelplane.cache.index import IndexEntry, Vector, VectorIndex
from modelplane.cache.scoring import CANDIDATES, judge, rank
from modelplane.embeddings.base import Embedder

__all__ = ["DEFAULT_THRESHOLD", "Decision", "Hit", "SemanticCache", "partition_key"]

T = TypeVar("T")

DEFAULT_THRESHOLD = 0.73
"""Chosen on bench/semantic_cache.py (tune halves) with wordllama-256 + guard; bench/README.md has the trade-off."""

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
    score: float  # cosine similarity to the cached question


@dataclass(frozen=True, slots=True)
class Decision(Generic[T]):
    """What a lookup found: a hit, or the best score and why it was not served."""

    hit: Hit[T] | None
    score: float | None  # cosine similarity of the picked candidate (None: the partition is empty)
    threshold: float
    reason: str  # `semantic` (hit), `no_entries`, `below_threshold` or `guard:<why>`: see cache/scoring.py


class SemanticCache(Generic[T]):
    """Answers by meaning, within a partition, bounded in bytes (LRU), with per-feature thresholds."""

    def __init__(
        self,
        embedder: Embedder,
        *,
        max_bytes: int = 256 * 2**20,
        default_threshold: float = DEFAULT_THRESHOLD,
        thresholds: Mapping[str, float] | None = None,
        guard: bool = True,
        lexical: bool = True,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.embedder = embedder
        self.index: VectorIndex[_Stored[T]] = VectorIndex(embedder.dim, max_bytes=max_bytes)
        self.default_threshold = default_threshold
        self.thresholds = dict(thresholds or {})
        self.guard = guard  # False: no guard rules (for comparison only)
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
        if cosine < threshold:  # no pick can do better than the nearest: skip reading the question
            return Decision(None, cosine, threshold, "below_threshold")
        query = facts(question)
        if self.lexical and len(found) > 1:
            entry, cosine = max(found, key=lambda candidate: rank(candidate[1], query, candidate[0].value.facts))
        judgement = judge(cosine, threshold, query, entry.value.facts, guard=self.guard)
        if not judgement.accept:
            return Decision(None, cosine, threshold, judgement.reason)
        self.index.touch(entry)
        return Decision(Hit(entry.value.answer, entry.value.question, cosine), cosine, threshold, judgement.reason)

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
