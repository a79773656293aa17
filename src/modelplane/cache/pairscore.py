"""The learned hit scorer: P(same question) for a query and the cached question picked for it.

A cosine alone cannot tell "how do I start trading" from "how did you start trading", and
hand-written rules refuse many true paraphrases along with the look-alikes. So the default embedder
(wordllama-256) decides with a small gradient-boosted tree ensemble over cheap pair features
(`FEATURES`): the cosine; word, content-word and character-trigram overlap; how many content
words only one side uses, and how close those words are to the other side's in wordllama's own
word vectors; lengths; the kind of question; and the guard's verdict (cache/guard.py), one
flag per rule. Its output is the probability that the two questions ask the same thing; the
feature's threshold is checked against it and the ledger records it as `cache_score`.

Everything at run time is numpy: the trees were trained with scikit-learn by
bench/train_cache_scorer.py and exported to `pairscore.json` (shipped in the package); they
are evaluated for all trees at once, one tree level per step. A pair costs about 0.3 ms:
the features (half of it one embedder call for the few words only one side uses) and the trees.

Below the model's cosine `floor` the pair is not scored: its probability is 0 (on the
training data no pair below the floor scores near any usable threshold).
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from modelplane.cache.guard import GuardVerdict, QuestionFacts, content, overlap
from modelplane.cache.scoring import GUARD_RULES

__all__ = ["FEATURES", "FORMAT", "PairScorer", "Trees", "pair_features", "shipped_scorer"]

FORMAT = "modelplane.pairscore/1"
MODEL_FILE = "pairscore.json"

FEATURES = (
    "cosine",
    "word_overlap",
    "content_overlap",
    "trigram_overlap",
    "only_query",  # content words only the query uses (capped at 8)
    "only_cached",
    "only_either",
    "length_ratio",
    "length_diff",
    "length_min",
    "match_query",  # the worst best-match of a query-only word among the cached-only words
    "match_cached",
    "match_mean",
    "residual_cosine",  # cosine of the summed vectors of the words only each side uses
    "same_kind",
    "same_first_word",
    "entities",
    *(f"guard_{rule}" for rule in GUARD_RULES),
    "guard_ok",
)
"""The pair features, in the order the trees index them."""

_CAP = 8
_SPACES = re.compile(r"\s+")

Floats = npt.NDArray[np.float64]
WordVectors = Callable[[list[str]], npt.NDArray[np.float32]]
"""Embeds words into unit-length rows (the cache's wordllama embedder)."""


def pair_features(
    query: str,
    query_facts: QuestionFacts,
    cached: str,
    cached_facts: QuestionFacts,
    cosine: float,
    verdict: GuardVerdict,
    word_vectors: WordVectors,
) -> Floats:
    """The features of one (query, cached question) pair, in `FEATURES` order."""
    words_q, words_c = content(query_facts), content(cached_facts)
    only_q, only_c = sorted(words_q - words_c), sorted(words_c - words_q)
    either = words_q | words_c
    tokens_q, tokens_c = query.split(), cached.split()
    len_q, len_c = len(tokens_q), len(tokens_c)
    return np.array(
        [
            cosine,
            overlap(query_facts, cached_facts),
            len(words_q & words_c) / len(either) if either else 1.0,
            _jaccard(_trigrams(query), _trigrams(cached)),
            min(len(only_q), _CAP),
            min(len(only_c), _CAP),
            len(only_q) + len(only_c),
            min(len_q, len_c) / max(len_q, len_c, 1),
            abs(len_q - len_c),
            min(len_q, len_c),
            *_word_matches(only_q, only_c, word_vectors),
            float(query_facts.asks == cached_facts.asks),
            _same_first(tokens_q, tokens_c),
            len(query_facts.entities) + len(cached_facts.entities),
            *(float(not verdict.ok and verdict.reason == rule) for rule in GUARD_RULES),
            float(verdict.ok),
        ],
        np.float64,
    )


def _same_first(a: list[str], b: list[str]) -> float:
    return float(bool(a) and bool(b) and a[0].lower() == b[0].lower())


def _trigrams(text: str) -> frozenset[str]:
    padded = f" {_SPACES.sub(' ', text.lower())} "
    return frozenset(padded[i : i + 3] for i in range(len(padded) - 2))


def _jaccard(a: frozenset[str], b: frozenset[str]) -> float:
    union = len(a | b)
    return len(a & b) / union if union else 1.0


def _word_matches(only_q: list[str], only_c: list[str], word_vectors: WordVectors) -> tuple[float, float, float, float]:
    """How well the words only one side uses find a counterpart on the other: one embedder call."""
    if not only_q and not only_c:
        return 1.0, 1.0, 1.0, 1.0
    if not only_q or not only_c:
        return 0.0, 0.0, 0.0, 0.0
    vectors = np.asarray(word_vectors(only_q + only_c), np.float64)
    a, b = vectors[: len(only_q)], vectors[len(only_q) :]
    sims = a @ b.T
    best_q, best_c = sims.max(axis=1), sims.max(axis=0)
    return (
        float(best_q.min()),
        float(best_c.min()),
        float((best_q.mean() + best_c.mean()) / 2),
        _cosine(a.sum(axis=0), b.sum(axis=0)),
    )


def _cosine(a: Floats, b: Floats) -> float:
    norm = float(np.linalg.norm(a) * np.linalg.norm(b))
    return float(a @ b) / norm if norm else 0.0


@dataclass(frozen=True, slots=True)
class Trees:
    """A gradient-boosted binary classifier's trees, all nodes in flat arrays (tree t starts at `roots[t]`).

    A node sends a row left when `x[feature] <= threshold` (or when the value is missing and
    `missing_left`); a leaf points to itself, so every tree can take `depth` steps.
    """

    roots: npt.NDArray[np.intp]
    feature: npt.NDArray[np.intp]
    threshold: Floats
    missing_left: npt.NDArray[np.bool_]
    left: npt.NDArray[np.intp]
    right: npt.NDArray[np.intp]
    value: Floats
    baseline: float
    depth: int

    def probability(self, rows: Floats) -> Floats:
        """P(positive) for each row of features (one row per pair): all trees at once, a level per step."""
        rows = np.atleast_2d(rows)
        missing = bool(np.isnan(rows).any())
        which = np.arange(rows.shape[0])[:, None]
        node = np.broadcast_to(self.roots, (rows.shape[0], self.roots.size))
        for _ in range(self.depth):
            x = rows[which, self.feature[node]]
            go_left = x <= self.threshold[node]
            if missing:
                go_left |= np.isnan(x) & self.missing_left[node]
            node = np.where(go_left, self.left[node], self.right[node])
        raw = self.baseline + self.value[node].sum(axis=1)
        probability: Floats = 1.0 / (1.0 + np.exp(-raw))
        return probability

    @classmethod
    def from_nodes(cls, trees: Sequence[Mapping[str, Sequence[Any]]], baseline: float) -> Trees:
        """From per-tree node lists (`feature`, `threshold`, `missing_left`, `left`, `right`, `value`, `leaf`)."""
        sizes = np.array([len(tree["leaf"]) for tree in trees], np.intp)
        roots = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.intp)

        def joined(field: str, dtype: type) -> npt.NDArray[Any]:
            return np.concatenate([np.asarray(tree[field], dtype) for tree in trees])

        leaf = joined("leaf", np.bool_)
        offset = np.repeat(roots, sizes)
        itself = np.arange(leaf.size, dtype=np.intp)
        left = np.where(leaf, itself, joined("left", np.intp) + offset)
        right = np.where(leaf, itself, joined("right", np.intp) + offset)
        return cls(
            roots,
            np.where(leaf, 0, joined("feature", np.intp)),
            joined("threshold", np.float64),
            joined("missing_left", np.bool_),
            left,
            right,
            np.where(leaf, joined("value", np.float64), 0.0),
            baseline,
            _depth(roots, left, right),
        )


def _depth(roots: npt.NDArray[np.intp], left: npt.NDArray[np.intp], right: npt.NDArray[np.intp]) -> int:
    """Steps until every path of every tree has reached its leaf."""
    itself = np.arange(left.size)
    reached, depth = np.unique(roots), 0
    while True:
        inner = reached[(left[reached] != itself[reached]) | (right[reached] != itself[reached])]
        if inner.size == 0:
            return depth
        reached, depth = np.unique(np.concatenate([left[inner], right[inner]])), depth + 1


@dataclass(frozen=True, slots=True)
class PairScorer:
    """P(same question) for a picked candidate, from the shipped (or a given) model file."""

    trees: Trees
    word_vectors: WordVectors
    floor: float  # below this cosine the pair is not scored: P = 0
    embedder: str  # the embedder the model was trained on: its cosines and word vectors

    def score(
        self,
        query: str,
        query_facts: QuestionFacts,
        cached: str,
        cached_facts: QuestionFacts,
        cosine: float,
        verdict: GuardVerdict,
    ) -> float:
        if cosine < self.floor:
            return 0.0
        row = pair_features(query, query_facts, cached, cached_facts, cosine, verdict, self.word_vectors)
        return float(self.trees.probability(row)[0])

    @classmethod
    def load(cls, word_vectors: WordVectors, path: Path | None = None) -> PairScorer:
        """A model file written by bench/train_cache_scorer.py (default: the one shipped in the package)."""
        if path is None:
            text = resources.files("modelplane.cache").joinpath(MODEL_FILE).read_text(encoding="utf-8")
        else:
            text = path.read_text(encoding="utf-8")
        return cls.from_dict(json.loads(text), word_vectors)

    @classmethod
    def from_dict(cls, model: Mapping[str, Any], word_vectors: WordVectors) -> PairScorer:
        if model.get("format") != FORMAT:
            raise ValueError(f"not a {FORMAT} model: format {model.get('format')!r}")
        if tuple(model["features"]) != FEATURES:
            raise ValueError("the model was trained on other features than this version computes")
        trees = Trees.from_nodes(model["trees"], float(model["baseline"]))
        return cls(trees, word_vectors, float(model["floor"]), str(model["embedder"]))


def shipped_scorer(name: str, word_vectors: WordVectors) -> PairScorer | None:
    """The shipped scorer when embedder `name` is the one it was trained on, else None (cosine + rules).

    The model file is read and its trees built once per process (~30 ms), not per cache a reload makes."""
    model = _shipped_model()
    if model["embedder"] != name:
        return None
    return PairScorer(_shipped_trees(), word_vectors, float(model["floor"]), str(model["embedder"]))


@functools.cache
def _shipped_model() -> dict[str, Any]:
    model: dict[str, Any] = json.loads(
        resources.files("modelplane.cache").joinpath(MODEL_FILE).read_text(encoding="utf-8")
    )
    if model.get("format") != FORMAT or tuple(model["features"]) != FEATURES:
        raise ValueError(f"the shipped {MODEL_FILE} does not match this version's {FORMAT} features")
    return model


@functools.cache
def _shipped_trees() -> Trees:
    model = _shipped_model()
    return Trees.from_nodes(model["trees"], float(model["baseline"]))
