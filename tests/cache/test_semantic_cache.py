"""The semantic cache: partitions, thresholds, the guard, TTL and purge."""

from __future__ import annotations

import numpy as np
import pytest

from modelplane.cache.semantic import SemanticCache, partition_key


class BagOfWordsEmbedder:
    """A deterministic test embedder: hashed bag of lower-cased words, unit length."""

    name = "test/bag-of-words"
    dim = 64

    def embed(self, texts: list[str]) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), np.float32)
        for row, text in enumerate(texts):
            for word in text.lower().replace("?", "").split():
                out[row, sum(map(ord, word)) % self.dim] += 1.0
        unit: np.ndarray = out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-9)
        return unit


@pytest.fixture
def cache() -> SemanticCache[str]:
    return SemanticCache(BagOfWordsEmbedder(), default_threshold=0.8)


ACME = partition_key("acme", "support", "system prompt v1")


def test_same_question_hits_with_its_score(cache: SemanticCache[str]) -> None:
    cache.store(ACME, "how do i reset my password", "click 'forgot password'")
    hit = cache.lookup(ACME, "How do I reset my password?")
    assert hit is not None
    assert hit.answer == "click 'forgot password'"
    assert hit.score > 0.99
    assert cache.decide(ACME, "How do I reset my password?").reason == "semantic"


def test_identical_text_in_another_tenant_feature_or_context_misses(cache: SemanticCache[str]) -> None:
    cache.store(ACME, "how do i reset my password", "acme's answer")
    for other in (
        partition_key("globex", "support", "system prompt v1"),
        partition_key("acme", "billing", "system prompt v1"),
        partition_key("acme", "support", "system prompt v2"),
    ):
        decision = cache.decide(other, "how do i reset my password")
        assert decision.hit is None
        assert decision.reason == "no_entries"


def test_threshold_per_feature(cache: SemanticCache[str]) -> None:
    cache.thresholds["strict"] = 0.99
    question, near = "how do i reset my account password", "how do i reset my password"
    for feature in ("support", "strict"):
        cache.store(partition_key("acme", feature), question, "answer")
    loose = cache.decide(partition_key("acme", "support"), near, feature="support")
    strict = cache.decide(partition_key("acme", "strict"), near, feature="strict")
    assert loose.score is not None and 0.8 <= loose.score < 0.99
    assert loose.hit is not None
    assert strict.hit is None
    assert strict.reason == "below_threshold"
    assert strict.threshold == 0.99


def test_negated_question_is_rejected_by_the_guard(cache: SemanticCache[str]) -> None:
    cache.store(ACME, "Why do people worry about global warming?", "because …")
    decision = cache.decide(ACME, "Why don't people worry about global warming?")
    assert decision.score is not None and decision.score >= 0.8  # the embedder alone would serve it
    assert decision.hit is None
    assert decision.reason == "guard:negation"


def test_guard_can_be_turned_off(cache: SemanticCache[str]) -> None:
    plain: SemanticCache[str] = SemanticCache(BagOfWordsEmbedder(), default_threshold=0.8, guard=False)
    plain.store(ACME, "Why do people worry about global warming?", "because …")
    assert plain.lookup(ACME, "Why don't people worry about global warming?") is not None


def test_ttl_expires_entries() -> None:
    now = [0.0]
    cache: SemanticCache[str] = SemanticCache(BagOfWordsEmbedder(), clock=lambda: now[0])
    cache.store(ACME, "what are your opening hours", "9 to 5", ttl=60)
    assert cache.lookup(ACME, "what are your opening hours") is not None
    now[0] = 61
    assert cache.lookup(ACME, "what are your opening hours") is None
    assert len(cache.index) == 0


def test_purge_by_tenant_and_feature(cache: SemanticCache[str]) -> None:
    for tenant in ("acme", "acme2"):
        for feature in ("support", "billing"):
            cache.store(partition_key(tenant, feature), "question", f"{tenant}/{feature}")
    assert cache.purge(tenant="acme", feature="support") == 1
    assert cache.purge(tenant="acme") == 1  # not acme2's
    assert cache.purge(feature="billing") == 1
    assert len(cache.index) == 1
    assert cache.lookup(partition_key("acme2", "support"), "question") is not None


def test_the_candidate_that_keeps_the_askers_words_is_picked() -> None:
    """Of near-tied cached questions, the one sharing more of the query's words is served (scoring.rank)."""
    cache: SemanticCache[str] = SemanticCache(TopicEmbedder(), default_threshold=0.5)
    cache.store(ACME, "where is the invoice for my order", "the invoice answer")
    cache.store(ACME, "where is the parcel for my order", "the parcel answer")
    hit = cache.lookup(ACME, "where is my parcel")
    assert hit is not None and hit.answer == "the parcel answer"
    nearest_only: SemanticCache[str] = SemanticCache(TopicEmbedder(), default_threshold=0.5, lexical=False)
    nearest_only.store(ACME, "where is the invoice for my order", "the invoice answer")
    nearest_only.store(ACME, "where is the parcel for my order", "the parcel answer")
    plain = nearest_only.lookup(ACME, "where is my parcel")
    assert plain is not None and plain.answer == "the invoice answer"  # what the embedding alone picks


def test_a_refused_pick_is_a_miss_not_the_runner_up(cache: SemanticCache[str]) -> None:
    cache.store(ACME, "Why don't people worry about global warming?", "they do not because …")
    runner_up = "Why do people worry about global warming today and tomorrow"
    cache.store(ACME, runner_up, "because …")
    decision = cache.decide(ACME, "Why do people worry about global warming?")
    assert decision.hit is None
    assert decision.reason == "guard:negation"
    alone: SemanticCache[str] = SemanticCache(BagOfWordsEmbedder(), default_threshold=0.8)
    alone.store(ACME, runner_up, "because …")
    assert alone.lookup(ACME, "Why do people worry about global warming?") is not None  # it would pass on its own


class TopicEmbedder:
    """An embedding that puts the invoice question a hair nearer the parcel query than the parcel question."""

    name = "test/topic"
    dim = 3
    SLANT = {
        "where is my parcel": 0.21,
        "where is the invoice for my order": 0.20,
        "where is the parcel for my order": 0.24,
    }

    def embed(self, texts: list[str]) -> np.ndarray:
        out = np.asarray([[1.0, self.SLANT[text], 0.0] for text in texts], np.float32)
        unit: np.ndarray = out / np.linalg.norm(out, axis=1, keepdims=True)
        return unit
