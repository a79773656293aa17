"""The learned hit scorer: its tree evaluator, its pair features, the shipped model and its place in the cache."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

from modelplane.cache.guard import compare, facts
from modelplane.cache.pairscore import FEATURES, FORMAT, PairScorer, Trees, pair_features, shipped_scorer
from modelplane.cache.semantic import COSINE_THRESHOLD, LEARNED_THRESHOLD, SemanticCache
from modelplane.embeddings.wordllama import WordLlamaEmbedder
from modelplane.serving.cache import ResponseCache

# Two hand-built trees over 2 features. Tree 0: x0 <= 0.5 ? (x1 <= 2 ? -1 : 0.5) : 2, a missing
# x0 goes right. Tree 1: a single split on x1, a missing x1 goes left.
TINY: list[dict[str, Any]] = [
    {
        "feature": [0, 1, 0, 0, 0],
        "threshold": [0.5, 2.0, 0.0, 0.0, 0.0],
        "missing_left": [False, True, False, False, False],
        "left": [1, 3, 0, 0, 0],
        "right": [2, 4, 0, 0, 0],
        "value": [0.0, 0.0, 2.0, -1.0, 0.5],
        "leaf": [False, False, True, True, True],
    },
    {
        "feature": [1, 0, 0],
        "threshold": [1.0, 0.0, 0.0],
        "missing_left": [True, False, False],
        "left": [1, 0, 0],
        "right": [2, 0, 0],
        "value": [0.0, 0.25, -0.75],
        "leaf": [False, True, True],
    },
]


def reference(trees: list[dict[str, Any]], baseline: float, x: list[float]) -> float:
    """One row, one tree at a time, one node at a time."""
    raw = baseline
    for tree in trees:
        node = 0
        while not tree["leaf"][node]:
            value = x[tree["feature"][node]]
            left = tree["missing_left"][node] if math.isnan(value) else value <= tree["threshold"][node]
            node = tree["left"][node] if left else tree["right"][node]
        raw += tree["value"][node]
    return 1 / (1 + math.exp(-raw))


def test_the_tree_evaluator_matches_a_node_by_node_reference() -> None:
    trees = Trees.from_nodes(TINY, baseline=0.1)
    assert trees.depth == 2
    rows = [[0.2, 1.0], [0.2, 3.0], [0.5, 2.0], [0.9, 0.0], [float("nan"), 5.0], [0.1, float("nan")]]
    got = trees.probability(np.array(rows))
    want = [reference(TINY, 0.1, row) for row in rows]
    assert got == pytest.approx(want, abs=1e-12)
    assert len(set(np.round(got, 9))) >= 4  # the rows really take different paths
    assert trees.probability(np.array(rows[1]))[0] == pytest.approx(want[1])  # a single row


def unit_words(words: list[str]) -> np.ndarray:
    """Test word vectors: identical words match, 'fast' and 'quick' are close, the rest unrelated."""
    axes = {"fast": 0, "quick": 0, "quickly": 0}
    out = np.zeros((len(words), 8), np.float32)
    for row, word in enumerate(words):
        out[row, axes.get(word, 1 + sum(map(ord, word)) % 7)] = 1.0
    return out


def features(query: str, cached: str, cosine: float = 0.9) -> dict[str, float]:
    calls: list[list[str]] = []

    def vectors(words: list[str]) -> np.ndarray:
        calls.append(words)
        return unit_words(words)

    fq, fc = facts(query), facts(cached)
    row = pair_features(query, fq, cached, fc, cosine, compare(fq, fc), vectors)
    assert len(calls) <= 1  # the words only one side uses are embedded in one call
    return dict(zip(FEATURES, row.tolist(), strict=True))


def test_features_of_the_same_question() -> None:
    f = features("How do I reset my password?", "How do I reset my password?")
    assert f["cosine"] == 0.9
    assert f["word_overlap"] == f["content_overlap"] == f["trigram_overlap"] == 1.0
    assert f["only_query"] == f["only_cached"] == f["only_either"] == 0
    assert f["match_query"] == f["match_cached"] == f["residual_cosine"] == 1.0
    assert f["length_ratio"] == 1.0 and f["length_diff"] == 0 and f["length_min"] == 6
    assert f["same_kind"] == f["same_first_word"] == f["guard_ok"] == 1.0
    assert sum(f[f"guard_{rule}"] for rule in ("negation", "number", "entity")) == 0


def test_features_of_differing_questions() -> None:
    f = features("How do I learn piano fast?", "What is the quickest way to learn the piano quickly?")
    assert (f["only_query"], f["only_cached"], f["only_either"]) == (1, 3, 4)  # fast | quickest, way, quickly
    assert f["match_query"] == pytest.approx(1.0)  # "fast" finds "quickly"
    assert f["match_cached"] < 0.5  # "way" finds nothing
    assert f["same_first_word"] == 0.0 and f["length_diff"] == 4
    negated = features("Why do people worry about taxes?", "Why don't people worry about taxes?")
    assert negated["guard_negation"] == 1.0 and negated["guard_ok"] == 0.0
    one_sided = features("How do I cook rice?", "How do I cook rice at home?")
    assert one_sided["only_query"] == 0 and one_sided["match_query"] == 0.0


@pytest.fixture(scope="module")
def embedder() -> WordLlamaEmbedder:
    return WordLlamaEmbedder(256)


@pytest.fixture(scope="module")
def scorer(embedder: WordLlamaEmbedder) -> PairScorer:
    found = shipped_scorer(embedder.name, embedder.embed)
    assert found is not None
    return found


def score(scorer: PairScorer, embedder: WordLlamaEmbedder, query: str, cached: str) -> float:
    vectors = embedder.embed([query, cached])
    fq, fc = facts(query), facts(cached)
    return scorer.score(query, fq, cached, fc, float(vectors[0] @ vectors[1]), compare(fq, fc))


def test_the_shipped_model_loads_for_its_embedder_only(embedder: WordLlamaEmbedder, scorer: PairScorer) -> None:
    assert scorer.embedder == "wordllama/l2_supercat-256" and 0 < scorer.floor < 0.73
    assert scorer.trees.roots.size > 10 and scorer.trees.depth > 1
    assert shipped_scorer("wordllama/l2_supercat-128", embedder.embed) is None
    assert shipped_scorer("sentence-transformers/all-MiniLM-L6-v2", embedder.embed) is None
    with pytest.raises(ValueError, match="other features"):
        PairScorer.from_dict({"format": FORMAT, "features": ["cosine"]}, embedder.embed)


def test_the_shipped_model_scores_look_alikes_below_a_paraphrase(
    embedder: WordLlamaEmbedder, scorer: PairScorer
) -> None:
    paraphrase = score(scorer, embedder, "How can I reset my password?", "How do I reset my password?")
    negated = score(
        scorer, embedder, "Why do people worry about global warming?", "Why don't people worry about global warming?"
    )
    number = score(scorer, embedder, "Best internships of 2017?", "Best internships of 2016?")
    unrelated = score(scorer, embedder, "What is the capital of France?", "How do I bake bread?")
    assert paraphrase >= LEARNED_THRESHOLD > max(negated, number)
    assert unrelated == 0.0  # below the cosine floor: not scored


def test_the_cache_decides_with_the_scorer_and_records_its_probability(
    embedder: WordLlamaEmbedder, scorer: PairScorer
) -> None:
    cache: SemanticCache[str] = SemanticCache(embedder, scorer=scorer)
    assert cache.default_threshold == LEARNED_THRESHOLD
    cache.store("p", "How do I reset my password?", "click 'forgot password'")
    hit = cache.decide("p", "How can I reset my password?")
    assert hit.reason == "semantic" and hit.hit is not None
    assert (
        hit.score
        == hit.hit.score
        == pytest.approx(score(scorer, embedder, "How can I reset my password?", "How do I reset my password?"))
    )
    negated = cache.decide("p", "How do I not reset my password?")
    assert (negated.hit, negated.reason) == (None, "guard:negation")
    assert negated.score is not None and negated.score < LEARNED_THRESHOLD
    far = cache.decide("p", "What is the weather on Mars today?")
    assert (far.hit, far.reason, far.score) == (None, "below_threshold", 0.0)


def test_the_gateway_cache_uses_the_scorer_with_its_embedder_only(embedder: WordLlamaEmbedder) -> None:
    default = ResponseCache(2**20, lambda: embedder).semantic(256)
    assert default.scorer is not None and default.default_threshold == LEARNED_THRESHOLD
    truncated = ResponseCache(2**20, lambda: WordLlamaEmbedder(128)).semantic(128)
    assert truncated.scorer is None and truncated.default_threshold == COSINE_THRESHOLD
