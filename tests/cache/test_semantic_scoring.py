"""The decision API the ledger's `cache_reason` comes from: pick, bar, guard, one reason each."""

from __future__ import annotations

import pytest

from modelplane.cache.guard import GuardVerdict, facts
from modelplane.cache.scoring import GUARD_RULES, LEXICAL_WEIGHT, REASONS, judge, rank, weigh


def test_a_close_paraphrase_is_served() -> None:
    judgement = judge(0.9, 0.73, facts("How can I reset my password?"), facts("How do I reset my password?"))
    assert (judgement.accept, judgement.reason, judgement.score) == (True, "semantic", 0.9)


def test_below_the_bar_misses_whatever_the_words() -> None:
    same = facts("How do I reset my password?")
    judgement = judge(0.72, 0.73, same, same)
    assert (judgement.accept, judgement.reason) == (False, "below_threshold")


@pytest.mark.parametrize(
    ("query", "cached", "reason"),
    [
        ("Why do people worry about global warming?", "Why don't people worry about global warming?", "negation"),
        ("Best internships of 2017?", "Best internships of 2016?", "number"),
        ("What is the capital of France?", "What is the capital of Germany?", "entity"),
        ("How do you convert benzene into toluene?", "How do you convert toluene into benzene?", "direction"),
    ],
)
def test_the_guard_refuses_above_the_bar_with_its_reason(query: str, cached: str, reason: str) -> None:
    judgement = judge(0.99, 0.73, facts(query), facts(cached))
    assert (judgement.accept, judgement.reason) == (False, f"guard:{reason}")
    assert judge(0.99, 0.73, facts(query), facts(cached), guard=False).accept


def test_every_reason_is_listed() -> None:
    assert set(REASONS) == {"semantic", "below_threshold", *(f"guard:{rule}" for rule in GUARD_RULES)}
    assert "guard:direction" in REASONS and "guard:negation" in REASONS


def test_rank_lifts_the_candidate_that_keeps_the_askers_words() -> None:
    query = facts("where is my parcel")
    parcel, invoice = facts("where is the parcel for my order"), facts("where is the invoice for my order")
    assert rank(0.90, query, parcel) > rank(0.91, query, invoice)  # the words outweigh a hair of cosine
    assert rank(0.95, query, invoice) > rank(0.80, query, parcel)  # but not a clear gap in meaning
    assert rank(1.0, query, query) == pytest.approx(1.0)
    assert 0 < LEXICAL_WEIGHT < 0.5


def test_the_learned_bar_is_on_the_probability_and_a_guard_rule_always_refuses() -> None:
    assert weigh(0.7, 0.64, GuardVerdict(ok=True)).accept
    vetoed = weigh(0.99, 0.64, GuardVerdict(ok=False, reason="number"))  # however sure the model is
    assert (vetoed.accept, vetoed.reason, vetoed.score) == (False, "guard:number", 0.99)
    refused = weigh(0.3, 0.64, GuardVerdict(ok=False, reason="negation"))
    assert (refused.accept, refused.reason, refused.score) == (False, "guard:negation", 0.3)
    assert weigh(0.63, 0.64, GuardVerdict(ok=True)).reason == "below_threshold"


def test_the_default_bar_follows_the_configured_embedder() -> None:
    from modelplane.cache.semantic import COSINE_THRESHOLD, LEARNED_THRESHOLD, default_threshold

    assert default_threshold("wordllama") == default_threshold("wordllama:256") == LEARNED_THRESHOLD
    for other in ("wordllama:64", "sentence-transformers:all-MiniLM-L6-v2", "model:embed"):
        assert default_threshold(other) == COSINE_THRESHOLD
