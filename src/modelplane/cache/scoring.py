"""How a semantic hit is decided: nearest candidates, a word-aware pick, a cosine bar, the guard.

Three steps, with one reason per outcome:

1. The embedding's cosine gathers the CANDIDATES nearest cached questions of the partition.
2. Each candidate is ranked by

       rank = (1 - LEXICAL_WEIGHT) * cosine + LEXICAL_WEIGHT * overlap

   where `overlap` is the share of the two questions' distinct words that both use
   (guard.overlap, Jaccard). Why: the default embedder averages word vectors, so cached
   questions that are near-copies of each other ("the documentation … provides information"
   / "… provides information and guidance") sit within a few hundredths of the query, and
   the one that keeps more of the asker's own words is the one they meant. Only the pick
   among candidates uses the words: with one candidate (or one clear winner) nothing changes.
3. The picked candidate is served when its cosine reaches the feature's threshold and the
   guard (guard.compare) finds no difference in negation, numbers, names, quoted strings,
   antonyms, direction or kind of question. The bar stays on the bare cosine because mixing
   the words into it as well cost precision on look-alike questions (Quora pairs) at every
   recall, for a few more paraphrase hits. A refused pick is a miss: the runner-up is never
   served in its place (that added wrong hits and no correct ones on the benchmark).

The weight, the candidate count and the default threshold were chosen on one half of each
benchmark data set and are reported on the other half too (bench/semantic_cache.py,
bench/README.md).

`judge()` is the stable API for the decision and its reason, as the ledger records it:
`semantic` (served), `below_threshold`, or `guard:<why>` with <why> one of GUARD_RULES.
"""

from __future__ import annotations

from dataclasses import dataclass

from modelplane.cache.guard import QuestionFacts, compare, overlap

__all__ = ["CANDIDATES", "GUARD_RULES", "LEXICAL_WEIGHT", "REASONS", "Judgement", "judge", "rank"]

LEXICAL_WEIGHT = 0.2
"""Share of the rank given to word overlap; the rest is the embedding's cosine."""

CANDIDATES = 4
"""How many nearest questions (by cosine) are ranked; only the best-ranked may be served."""

GUARD_RULES = ("negation", "number", "quoted", "entity", "antonym", "question", "direction")
REASONS = ("semantic", "below_threshold", *(f"guard:{rule}" for rule in GUARD_RULES))
"""Every reason `judge()` can give."""


@dataclass(frozen=True, slots=True)
class Judgement:
    """Whether a cached question may answer the query, its cosine, and why (one of REASONS)."""

    accept: bool
    reason: str
    score: float  # the cosine similarity the threshold was checked against


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
