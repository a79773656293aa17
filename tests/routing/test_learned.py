"""The learned router: training on a small fixture, its file (roundtrip, bad files), its data readers."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from modelplane.embeddings.base import EmbedderSpec
from modelplane.embeddings.wordllama import WordLlamaEmbedder
from modelplane.errors import ConfigError, UsageError
from modelplane.routing.data import Outcomes, outcomes_from_rows, read_outcomes_csv
from modelplane.routing.learned import TEXT_FEATURES, LearnedRouter, rank_in, text_features
from modelplane.routing.metrics import evaluate
from modelplane.routing.train import TrainOptions, embed_prompts, routed_accuracy_area, train_router

DATA = Path(__file__).parent / "data"
FILES = [DATA / "outcomes_a.csv", DATA / "outcomes_b.csv"]


@pytest.fixture(scope="module")
def embedder() -> WordLlamaEmbedder:
    return WordLlamaEmbedder()


@pytest.fixture(scope="module")
def trained(embedder: WordLlamaEmbedder) -> tuple[LearnedRouter, Outcomes, np.ndarray]:
    data = Outcomes.of(read_outcomes_csv(FILES, "weak-model", "strong-model"))
    vectors = embed_prompts(embedder, data.prompts)
    router = train_router(
        data, vectors, embedder=embedder.name, embedder_spec=EmbedderSpec(), options=TrainOptions(1.0, 1.0)
    )
    return router, data, vectors


def test_router_sends_the_hard_prompts_to_the_strong_model(trained: tuple[LearnedRouter, Outcomes, np.ndarray]) -> None:
    router, data, vectors = trained
    scores = router.score_many(data.prompts, vectors)
    assert ((scores >= 0) & (scores <= 1)).all()
    needs_strong = data.strong_ok & ~data.weak_ok
    assert scores[needs_strong].min() > scores[data.weak_ok & data.strong_ok].max()
    assert evaluate(scores, data.weak_ok, data.strong_ok).apgr > 0.7  # random: 0.5, oracle: 0.80
    assert router.score(data.prompts[0], vectors[0]) == pytest.approx(scores[0])


def test_held_out_file_is_routed_by_what_it_learned(embedder: WordLlamaEmbedder) -> None:
    train = Outcomes.of(read_outcomes_csv(FILES[:1], "weak-model", "strong-model"))
    test = Outcomes.of(read_outcomes_csv(FILES[1:], "weak-model", "strong-model"))
    router = train_router(
        train,
        embed_prompts(embedder, train.prompts),
        embedder=embedder.name,
        embedder_spec=EmbedderSpec(),
        options=TrainOptions(1.0, 1.0),
    )
    scores = router.score_many(test.prompts, embed_prompts(embedder, test.prompts))
    assert evaluate(scores, test.weak_ok, test.strong_ok).apgr > 0.7  # random: 0.5, oracle: 0.75


def test_hopeless_prompts_go_to_the_weak_model(embedder: WordLlamaEmbedder) -> None:
    """The gain curve: the strong model is worth its price on middling prompts, not on ones both models fail.

    A monotone "harder → strong" router would rank the prompts no model answers first.
    """
    easy = [f"What is {a} plus {a}? Answer with a number." for a in range(1, 41)]
    middling = [f"Compute ({a} * 17 - 3^3) / 3 and give the remainder when divided by 19." for a in range(100, 140)]
    hopeless = [
        f"Prove or refute conjecture number {a} of the open problems list, citing every lemma, "
        f"with a complete formal derivation from first principles and all intermediate steps in full detail."
        for a in range(40)
    ]
    rows = [{"prompt": p, "weak_ok": True, "strong_ok": True} for p in easy]
    rows += [{"prompt": p, "weak_ok": False, "strong_ok": True} for p in middling]
    rows += [{"prompt": p, "weak_ok": False, "strong_ok": False} for p in hopeless]
    data = Outcomes.of(outcomes_from_rows(rows))
    vectors = embed_prompts(embedder, data.prompts)
    router = train_router(
        data, vectors, embedder=embedder.name, embedder_spec=EmbedderSpec(), options=TrainOptions(1.0, 1.0)
    )
    scores = router.score_many(data.prompts, vectors)
    easy_s, middling_s, hopeless_s = scores[:40], scores[40:80], scores[80:]
    # 120 prompts: the curve is smoothed over ~30 of them, so the kinds overlap at their edges only.
    assert np.median(middling_s) > max(np.percentile(easy_s, 95), np.percentile(hopeless_s, 95))
    assert hopeless_s.mean() < 0.65 < middling_s.mean()  # little gain expected where both models fail
    ranks = router.difficulty_rank(data.prompts, vectors)
    assert ranks[80:].max() < ranks[40:80].min() and ranks[40:80].max() < ranks[:40].min()


def test_tied_difficulties_share_the_middle_rank() -> None:
    levels = np.array([0.0, 1.0, 1.0, 1.0, 2.0])
    np.testing.assert_allclose(rank_in(np.array([1.0, 0.5, 1.5, -1.0, 3.0]), levels), [0.5, 0.125, 0.875, 0.0, 1.0])


def test_cross_fitting_by_group_unless_one_group_dominates(embedder: WordLlamaEmbedder) -> None:
    rows = [
        {"prompt": f"Question {i} of subject {g}?", "weak_ok": i % 3 == 0, "strong_ok": i % 2 == 0, "group": g}
        for g in "abcde"
        for i in range(12)
    ]
    data = Outcomes.of(outcomes_from_rows(rows))
    vectors = embed_prompts(embedder, data.prompts)
    options = TrainOptions(1.0, 1.0)
    router = train_router(data, vectors, embedder=embedder.name, embedder_spec=EmbedderSpec(), options=options)
    assert router.info["cross_fitting"] == "4 parts by group"
    big = rows + [{**r, "prompt": f"More {i}: {r['prompt']}", "group": "a"} for i in range(5) for r in rows[:12]]
    data = Outcomes.of(outcomes_from_rows(big))  # group a: 72 of 120 prompts
    router = train_router(
        data,
        embed_prompts(embedder, data.prompts),
        embedder=embedder.name,
        embedder_spec=EmbedderSpec(),
        options=options,
    )
    assert router.info["cross_fitting"] == "4 parts by prompt"


def test_a_strong_model_that_is_always_right_keeps_the_weights_finite(embedder: WordLlamaEmbedder) -> None:
    """The ledger's judge may grade the weak answer against the strong one: strong_ok is then always True."""
    rows = [{"prompt": f"Question number {i}?", "weak_ok": i % 3 == 0, "strong_ok": True} for i in range(60)]
    data = Outcomes.of(outcomes_from_rows(rows))
    vectors = embed_prompts(embedder, data.prompts)
    router = train_router(data, vectors, embedder=embedder.name, embedder_spec=EmbedderSpec(), options=TrainOptions())
    assert np.isfinite(router.intercepts).all() and abs(router.intercepts[0]) < 10


def test_routed_accuracy_area() -> None:
    weak = np.array([True, False, False, True])
    strong = np.array([True, True, False, False])
    best = routed_accuracy_area(np.array([0.1, 0.9, 0.5, 0.0]), weak, strong)
    worst = routed_accuracy_area(np.array([0.9, 0.0, 0.5, 1.0]), weak, strong)
    # Best first: the only-strong prompt, then the both-fail one, then the others; the accuracy curve
    # runs 0.5 → 0.75 → 0.75 → 0.75 → 0.5 over five shares of strong calls.
    assert best == pytest.approx((0.625 + 0.75 + 0.75 + 0.625) / 4)
    assert worst < best


def test_save_load_roundtrip(tmp_path: Path, trained: tuple[LearnedRouter, Outcomes, np.ndarray]) -> None:
    router, data, vectors = trained
    path = tmp_path / "router.json"
    router.save(path)
    loaded = LearnedRouter.load(path)
    assert loaded.version == router.version
    assert loaded.embedder == router.embedder == "wordllama/l2_supercat-256"
    assert loaded.embedder_spec == EmbedderSpec(kind="wordllama", dim=256)
    np.testing.assert_allclose(loaded.score_many(data.prompts, vectors), router.score_many(data.prompts, vectors))
    document = json.loads(path.read_text())
    assert document["format_version"] == 3 and document["text_features"] == list(TEXT_FEATURES)
    assert len(document["gain_curve"]) == 201 and 0.01 <= document["info"]["bandwidth"] <= 1
    # The version is the content: a different router has a different one.
    document["intercepts"][0] += 1
    path.write_text(json.dumps(document))
    assert LearnedRouter.load(path).version != router.version


def test_threshold_for_share_is_monotonic(trained: tuple[LearnedRouter, Outcomes, np.ndarray]) -> None:
    router, data, vectors = trained
    thresholds = [router.threshold_for_share(s) for s in (0.0, 0.25, 0.5, 0.75, 1.0)]
    assert thresholds == sorted(thresholds, reverse=True)
    scores = router.score_many(data.prompts, vectors)
    assert np.mean(scores >= router.threshold_for_share(0.5)) == pytest.approx(0.5, abs=0.1)


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        ("not json at all", "not JSON"),
        ('{"format": "something-else"}', "not a router file"),
        ('{"format": "modelplane-router", "format_version": 99}', "format version 99"),
        (
            '{"format": "modelplane-router", "format_version": 3, "target": "gain_over_difficulty", '
            '"text_features": ["x"]}',
            "other features",
        ),
        # A version-1 file (16 text features) says what changed and what to do.
        ('{"format": "modelplane-router", "format_version": 1}', "version 1 (16 text features)"),
        ('{"format": "modelplane-router", "format_version": 1}', "retrain it with `modelplane router train`"),
        # So does a version-2 file (two per-model heads).
        ('{"format": "modelplane-router", "format_version": 2}', "version 2 (two per-model heads, no gain curve)"),
    ],
)
def test_bad_router_files(tmp_path: Path, content: str, reason: str) -> None:
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(ConfigError) as info:
        LearnedRouter.load(path)
    assert reason in info.value.issues[0].message


def test_damaged_and_missing_router_files(tmp_path: Path, trained: tuple[LearnedRouter, Outcomes, np.ndarray]) -> None:
    with pytest.raises(ConfigError, match="no such router file"):
        LearnedRouter.load(tmp_path / "missing.json")
    router = trained[0]
    router.save(tmp_path / "r.json")
    document = json.loads((tmp_path / "r.json").read_text())
    document["weights"] = document["weights"][:-1]
    (tmp_path / "r.json").write_text(json.dumps(document))
    with pytest.raises(ConfigError, match="damaged"):
        LearnedRouter.load(tmp_path / "r.json")


def test_vectors_of_another_dimension_are_refused(trained: tuple[LearnedRouter, Outcomes, np.ndarray]) -> None:
    router = trained[0]
    with pytest.raises(ValueError, match="256-dim"):
        router.score("hello", np.zeros(64))


def test_text_features() -> None:
    question = "Which is NOT prime?\nA. 2\nB. 3\nC. 4\nD. 5\nAnswer:"
    features = dict(zip(TEXT_FEATURES, text_features(question), strict=True))
    assert features["negation"] == 1.0
    assert features["log_choices"] == pytest.approx(np.log1p(4))
    assert features["question_mark"] == 1.0
    assert dict(zip(TEXT_FEATURES, text_features(""), strict=True))["log_chars"] == 0.0


def test_question_shape_features() -> None:
    question = (
        "Which of the following is not a year of the Song dynasty?\n"
        "A. 1005\nB. 1127\nC. 1279\nD. None of the above, all were\nAnswer:"
    )
    features = dict(zip(TEXT_FEATURES, text_features(question), strict=True))
    assert features["which_of_the_following"] == 1.0
    assert features["log_negations"] == pytest.approx(np.log1p(1))  # lower-case "not", in the stem
    assert features["negation"] == 0.0  # the older feature counts capitals only
    assert features["all_or_none_option"] == 1.0
    assert features["numeric_option_share"] == pytest.approx(3 / 4)
    assert features["longest_option_position"] == 1.0  # D, the last of four
    assert features["calculation_cue"] == 0.0
    blank = dict(zip(TEXT_FEATURES, text_features(""), strict=True))
    assert all(value == 0.0 for value in blank.values())


def test_csv_errors(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="no column 'nope'"):
        read_outcomes_csv(FILES, "nope", "strong-model")
    with pytest.raises(UsageError, match="cannot read"):
        read_outcomes_csv([tmp_path / "missing.csv"], "weak-model", "strong-model")
    bad = tmp_path / "bad.csv"
    bad.write_text("prompt,w,s\nhello,True,maybe\n")
    with pytest.raises(UsageError, match=r"bad.csv:2: column 's' is 'maybe'"):
        read_outcomes_csv([bad], "w", "s")


def test_judged_servings_contract() -> None:
    rows = [
        {"prompt": "hi", "weak_ok": True, "strong_ok": True, "group": "chat"},
        {"prompt": "", "weak_ok": True, "strong_ok": True},  # skipped
        {"prompt": "prove it", "weak_ok": 0, "strong_ok": "true"},
    ]
    outcomes = outcomes_from_rows(rows)
    assert [(o.prompt, o.weak_ok, o.strong_ok, o.group) for o in outcomes] == [
        ("hi", True, True, "chat"),
        ("prove it", False, True, ""),
    ]
    with pytest.raises(UsageError, match="judged serving 1"):
        outcomes_from_rows([{"prompt": "x", "weak_ok": None, "strong_ok": True}])
