"""How a semantic hit is decided: nearest candidates, a word-aware pick, then a bar.

Three steps, with one reason per outcome (step 3 has two forms, by embedder):

1. The embedding's cosine gathers the CANDIDATES nearest cached questions of the partition.
2. Each candidate is ranked by

       rank = (1 - LEXICAL_WEIGHT) * cosine + LEXICAL_WEIGHT * overlap

   where `overlap` is the share of the two questions' distinct words that both use
   (guard.overlap, Jaccard). Why: the default embedder averages word vectors, so cached
   questions that are near-copies of each other ("the documentation … provides information"
   / "… provides information and guidance") sit within a few hundredths of the query, and
   the one that keeps more of the asker's own words is the one they meant. Only the pick
   among candidates uses the words: with one candidate (or one clear winner) nothing changes.
3. With the default embedder (wordllama-256), the learned scorer (cache/pairscore.py) gives
   the picked pair a probability of asking the same question, from its cosine, its words and
   the guard's verdict; the pick is served when the guard finds no difference and that
   probability reaches the feature's threshold (`weigh()`). With any other embedder, whose
   cosines the scorer was not trained on, the pick is served when its cosine reaches the
   threshold and the guard
   (guard.compare) finds no difference in negation, numbers, names, quoted strings,
   antonyms, direction or kind of question (`judge()`). That bar stays on the bare cosine
   because mixing the words into it as well cost precision on look-alike questions (Quora
   pairs) at every recall, for a few more paraphrase hits.
   Either way a refused pick is a miss: the runner-up is never served in its place (that
   added wrong hits and no correct ones on the benchmark).

The weight, the candidate count and the default thresholds were chosen on one half of each
benchmark data set and are reported on the other half too (bench/semantic_cache.py,
bench/README.md).

`judge()` and `weigh()` are the stable API for the decision and its reason, as the ledger
records it: `semantic` (served), `below_threshold`, or `guard:<why>` with <why> one of
GUARD_RULES. With either scorer a guard rule that fires refuses the pick.
"""

from __future__ import annotations

from dataclasses import dataclass

from modelplane.cache.guard import GuardVerdict, QuestionFacts, compare, overlap

__all__ = ["CANDIDATES", "GUARD_RULES", "LEXICAL_WEIGHT", "REASONS", "Judgement", "judge", "rank", "weigh"]

LEXICAL_WEIGHT = 0.2
"""Share of the rank given to word overlap; the rest is the embedding's cosine."""

CANDIDATES = 4
"""How many nearest questions (by cosine) are ranked; only the best-ranked may be served."""

GUARD_RULES = ("negation", "number", "quoted", "entity", "antonym", "question", "direction")
REASONS = ("semantic", "below_threshold", *(f"guard:{rule}" for rule in GUARD_RULES))
"""Every reason `judge()` can give."""


@dataclass(frozen=True, slots=True)
class Judgement:
    """Whether a cached question may answer the query, its score, and why (one of REASONS)."""

    accept: bool
    reason: str
    score: float  # what the threshold was checked against: the cosine, or the learned P(same question)


def rank(cosine: float, query: QuestionFacts, cached: QuestionFacts) -> float:
    """How one candidate ranks among the nearest: its cosine, lifted by the words both questions use."""
    return (1.0 - LEXICAL_WEIGHT) * cosine + LEXICAL_WEIGHT * overlap(query, cached)


def judge(
    cosine: float, threshold: float, query: QuestionFacts, cached: QuestionFacts, *, guard: bool = True
) -> Judgement:
    """Accept or refuse the picked candidate, with the reason the ledger records."""
    if cosine < threshold:
        return Judgement(False, "below_threshold", cosine)
    if guard:
        verdict = compare(query, cached)
        if not verdict.ok:
            return Judgement(False, f"guard:{verdict.reason}", cosine)
    return Judgement(True, "semantic", cosine)


def weigh(probability: float, threshold: float, verdict: GuardVerdict) -> Judgement:
    """Accept or refuse by the learned scorer's probability. A guard rule that fired refuses whatever
    the probability: a negated question or another number is never served, however sure the model is."""
    if not verdict.ok:
        return Judgement(False, f"guard:{verdict.reason}", probability)
    if probability >= threshold:
        return Judgement(True, "semantic", probability)
    return Judgement(False, "below_threshold", probability)
