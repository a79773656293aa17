"""The look-alike guard: different meaning is rejected, paraphrases pass."""

from __future__ import annotations

import pytest

from modelplane.cache.guard import check, facts, overlap


@pytest.mark.parametrize(
    ("query", "cached", "reason"),
    [
        ("Why do people worry about global warming?", "Why don't people worry about global warming?", "negation"),
        ("Is reselling tickets illegal?", "When is reselling tickets not illegal?", "negation"),
        ("Can I run it without a GPU?", "Can I run it with a GPU?", "negation"),
        ("Do banks offer credit cards on a 4500 salary?", "Do banks offer credit cards on a 4000 salary?", "number"),
        ("Best internships of 2017 for students?", "Best internships of 2016 for students?", "number"),
        ("What is it like to intern at Cisco in 2014?", "What is it like to intern at Cisco?", "number"),
        ("How long does it take to drive 5 km?", "How long does it take to drive 5 miles?", "number"),
        ("I need two tickets for tonight", "I need three tickets for tonight", "number"),
        ("Rehab center near San Juan County?", "Rehab center near San Miguel County?", "entity"),
        ("What is the capital of France?", "What is the capital of Germany?", "entity"),
        ("What's the best Mac text editor for R?", "What's the best Mac text editor?", "entity"),
        ('What words rhyme with "on"?', 'What words rhyme with "cat"?', "quoted"),
        ("What is the best gift you've ever given?", "What is the best gift you've ever received?", "antonym"),
        ("How do I increase my heart rate?", "How do I decrease my heart rate?", "antonym"),
        ("What should I eat before a run?", "What should I eat after a run?", "antonym"),
        ("Is Jackie Chan humble?", "Why is Jackie Chan humble?", "question"),
        ("How many AP classes should I take?", "When should I take AP classes?", "question"),
        ("Convert USD to EUR", "Convert EUR to USD", "direction"),
        # An averaged embedding cannot see word order: the same words around a relation, swapped.
        ("How do you convert benzene into toluene?", "How do you convert toluene into benzene?", "direction"),
        (
            "Is writing fiction harder than writing poetry?",
            "Is writing poetry harder than writing fiction?",
            "direction",
        ),
        (
            "How do I move files from my laptop to my phone?",
            "How do I move files from my phone to my laptop?",
            "direction",
        ),
    ],
)
def test_different_meaning_is_rejected(query: str, cached: str, reason: str) -> None:
    verdict = check(query, cached)
    assert not verdict.ok
    assert verdict.reason == reason
    assert check(cached, query).reason == reason  # symmetric


@pytest.mark.parametrize(
    ("query", "cached"),
    [
        ("How can I reset my password?", "How do I reset my password?"),
        ("What is the capital of France?", "what's the capital city of france"),
        ("How can you access a private Instagram account?", "How do I gain access to a private Instagram account?"),
        (
            "Hugging Face Hub is a platform to host Git-based models.",
            "Hugging Face Hub serves as a repository for Git-based models.",
        ),
        ("Is it worth learning Python in 2024?", "Is learning Python in 2024 worth it?"),
        ("Should I learn Rust, whether or not I know C?", "Should I learn Rust if I know C?"),
        ("Who is better, Liverpool or Manchester United?", "Liverpool or Manchester United: who is better?"),
        ("PyTorch tutorials for beginners", "Beginner tutorials for PyTorch"),
        ("What are the best places to visit in India?", "What are the best places to visit in india?"),
        ("Version 2.10.0 does not have it.", "No, it doesn't exist in version 2.10.0."),
        # Reordered, but not the other way round: a symmetric comparison, a moved phrase, a repeated word.
        ("How is the brain different from the mind?", "What is the mind and how is it different from the brain?"),
        (
            "Are all non-Muslims going to hell according to Islam?",
            "According to Islam, are all non-Muslims going to hell?",
        ),
        ("Is it possible for dogs to catch worms from other dogs?", "How can dogs pass worms to other dogs?"),
        ("How do I convert benzene into toluene?", "How can I convert benzene into toluene?"),
    ],
)
def test_paraphrases_pass(query: str, cached: str) -> None:
    verdict = check(query, cached)
    assert verdict.ok, verdict.reason
    assert verdict.reason == ""


def test_sentence_initial_capitals_are_not_entities() -> None:
    assert facts("Where can I buy shoes? Please help.").entities == ()
    assert facts("PyTorch or JAX? Which one?").entities == ("pytorch", "jax")


def test_numbers_are_normalised() -> None:
    assert facts("It costs 4,000 dollars.").numbers == facts("it costs 4000 dollars").numbers
    assert facts("twelve apples").numbers == facts("12 apples").numbers


def test_overlap_is_the_share_of_words_both_use() -> None:
    assert overlap(facts("How do I learn Python?"), facts("how do i learn python")) == 1.0
    assert overlap(facts("where is my parcel"), facts("where is the parcel for my order")) == 4 / 7
    assert overlap(facts("hello"), facts("goodbye")) == 0.0
    assert overlap(facts(""), facts("")) == 1.0
