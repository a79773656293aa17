"""Each assertion type passes and fails where it should (scorers as pure functions, judges scripted)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from evalfakes import scripted_judge

from modelplane.errors import UsageError
from modelplane.evals.assertions import REGISTRY, Check, Output, Score, score, scorer
from modelplane.evals.judges import Judge
from modelplane.evals.results import AssertionResult
from modelplane.evals.suite import parse_suite


async def verdict(
    spec: dict[str, Any],
    output: str,
    *,
    reference: str | None = None,
    baseline: str | None = None,
    judge: Judge | None = None,
    cost: float | None = 0.001,
    latency: float = 100.0,
    base: Path | None = None,
) -> AssertionResult:
    """Parse a one-test suite holding `spec` (so validation runs), then score `output` with it."""
    test: dict[str, Any] = {"messages": [{"role": "user", "content": "What is the capital of France?"}]}
    test["assert"] = [spec]
    if reference is not None:
        test["reference"] = reference
    if baseline is not None:
        test["baseline"] = baseline
    suite = parse_suite({"judge": {"model": "judge"}, "tests": [test]}, base=base)
    case = suite.cases[0]
    similarity = None
    if spec["type"].removeprefix("not-") == "similar":

        async def similarity(a: str, b: str) -> float:
            from modelplane.embeddings.wordllama import WordLlamaEmbedder

            vectors = WordLlamaEmbedder().embed([a, b])
            return float(vectors[0] @ vectors[1])

    output_ = Output(output, cost, latency, 10, 5, "small")
    return await score(Check(case.assertions[0], output_, case, judge, similarity))


@pytest.mark.parametrize(
    ("spec", "good", "bad"),
    [
        ({"type": "equals", "value": "Paris"}, "Paris\n", "paris"),
        ({"type": "equals", "value": {"a": 1}}, '{"a": 1}', '{"a": 2}'),
        ({"type": "contains", "value": "Paris"}, "It is Paris.", "It is paris."),
        ({"type": "icontains", "value": "PARIS"}, "it is paris", "it is Lyon"),
        ({"type": "not-contains", "value": "As an AI"}, "Paris.", "As an AI, Paris."),
        ({"type": "not-icontains", "value": "sorry"}, "Paris.", "SORRY, Paris."),
        ({"type": "contains-any", "value": ["Paris", "Lyon"]}, "Lyon", "Nice"),
        ({"type": "icontains-all", "value": "paris, france"}, "Paris, France", "Paris"),
        ({"type": "regex", "value": r"^\d{3}-\d{4}$"}, "555-1234", "555 1234"),
        ({"type": "not-regex", "value": r"\d"}, "no digits", "1 digit"),
        ({"type": "starts-with", "value": "Yes"}, "Yes, it is.", "No."),
        ({"type": "is-json"}, '```json\n{"a": [1, 2]}\n```', "{a: 1}"),
        ({"type": "is-json", "value": {"type": "object", "required": ["a"]}}, '{"a": 1}', '{"b": 1}'),
        (
            {"type": "json-schema", "value": {"type": "object", "properties": {"n": {"type": "integer"}}}},
            '{"n": 3}',
            '{"n": "three"}',
        ),
        ({"type": "json-path", "path": "$.items[0].name", "value": "pen"}, '{"items": [{"name": "pen"}]}', "{}"),
        ({"type": "json-path", "path": "$['a b'][-1]", "value": 3}, '{"a b": [1, 2, 3]}', '{"a b": [3, 2]}'),
        ({"type": "json-path", "path": "$.xs[*].v", "value": [1, 2]}, '{"xs": [{"v": 1}, {"v": 2}]}', '{"xs": []}'),
        ({"type": "numeric", "value": 42, "tolerance": 0.5}, "The answer is 42.3", "The answer is 43"),
        ({"type": "numeric", "value": 1200}, "about 1,200 people", "about 120 people"),
        ({"type": "length", "min": 2, "max": 10}, "Paris", "P"),
        ({"type": "length", "max": 3, "unit": "words"}, "one two three", "one two three four"),
        ({"type": "python", "value": "output.startswith('P') and context['vars'] == {}"}, "Paris", "Lyon"),
    ],
)
async def test_deterministic_assertions(spec: dict[str, Any], good: str, bad: str) -> None:
    passed, failed = await verdict(spec, good), await verdict(spec, bad)
    assert (passed.passed, passed.score) == (True, 1.0), passed
    assert failed.passed is False and failed.score < 1.0, failed
    assert failed.reason  # every failure says why
    assert passed.type == spec["type"]


async def test_cost_and_latency_ceilings() -> None:
    assert (await verdict({"type": "cost", "value": 0.01}, "x", cost=0.001)).passed
    over = await verdict({"type": "cost", "value": 0.0001}, "x", cost=0.001)
    assert not over.passed and "0.001" in over.reason
    unknown = await verdict({"type": "cost", "value": 1}, "x", cost=None)
    assert not unknown.passed and "unknown" in unknown.reason
    assert (await verdict({"type": "latency", "value": 500}, "x", latency=120)).passed
    assert not (await verdict({"type": "latency", "value": 100}, "x", latency=120)).passed


async def test_embedding_similarity_uses_wordllama() -> None:
    spec = {"type": "similar", "value": "The capital of France is Paris.", "threshold": 0.6}
    near = await verdict(spec, "Paris is the capital of France.")
    far = await verdict(spec, "Bananas are rich in potassium and grow in bunches.")
    assert near.passed and near.score > far.score
    assert not far.passed
    # The reference can come from the test, and `not-similar` flips the verdict.
    by_reference = await verdict({"type": "similar", "threshold": 0.6}, "Paris is the capital of France.",
                                 reference="The capital of France is Paris.")  # fmt: skip
    assert by_reference.passed
    negated = await verdict({"type": "not-similar", "value": "The capital of France is Paris.", "threshold": 0.6},
                            "Bananas are rich in potassium.")  # fmt: skip
    assert negated.passed


async def test_python_assertion_from_a_file_with_a_score(tmp_path: Path) -> None:
    (tmp_path / "checks.py").write_text(
        "def polite(output, context):\n"
        "    return {'pass': 'please' in output, 'score': 0.9 if 'please' in output else 0.1, 'reason': 'manners'}\n"
        "async def get_assert(output, context):\n"
        "    return len(output) / 10\n"
    )
    good = await verdict({"type": "python", "value": "file://checks.py:polite"}, "please sit", base=tmp_path)
    bad = await verdict({"type": "python", "value": "checks.py:polite"}, "sit", base=tmp_path)
    assert (good.passed, good.score, good.reason) == (True, 0.9, "manners")
    assert (bad.passed, bad.score) == (False, 0.1)
    # A bare file uses promptfoo's get_assert; a number is a score, passing at 0.5 unless a threshold says otherwise.
    assert (await verdict({"type": "python", "value": "checks.py"}, "123456", base=tmp_path)).passed
    assert not (
        await verdict({"type": "python", "value": "checks.py", "threshold": 0.8}, "123456", base=tmp_path)
    ).passed


async def test_a_crashing_python_check_fails_its_assertion_only() -> None:
    result = await verdict({"type": "python", "value": "1 / 0"}, "x")
    assert not result.passed and "division by zero" in result.reason


async def test_weight_and_threshold_are_carried() -> None:
    result = await verdict({"type": "contains", "value": "P", "weight": 3, "threshold": 0.5}, "P")
    assert (result.weight, result.threshold) == (3.0, 0.5)


# ---------------------------------------------------------------- judged


async def test_llm_rubric_reads_a_structured_verdict() -> None:
    judge, sent = scripted_judge('{"pass": true, "score": 0.9, "reason": "Polite and correct."}')
    result = await verdict({"type": "llm-rubric", "value": "is polite"}, "Paris, sir.", judge=judge)
    assert (result.passed, result.score, result.reason) == (True, 0.9, "Polite and correct.")
    prompt = sent[0][-1]["content"]
    assert "is polite" in prompt and "Paris, sir." in prompt and "capital of France" in prompt


async def test_llm_rubric_threshold_overrides_the_judges_pass() -> None:
    judge, _ = scripted_judge('{"pass": true, "score": 0.6, "reason": "ok"}')
    result = await verdict({"type": "llm-rubric", "value": "is polite", "threshold": 0.7}, "x", judge=judge)
    assert not result.passed and result.score == 0.6


@pytest.mark.parametrize(
    ("reply", "score", "passed"),
    [
        ('Sure! ```json\n{"score": 8, "reason": "good"}\n``` Hope that helps.', 0.8, True),  # fenced, 0-10 scale
        ("{'pass': false, 'score': 0.2, 'reason': 'rude',}", 0.2, False),  # broken JSON, repaired
        ('{"score": "0.7", "reason": "fine"', 0.7, True),  # cut off
        ("Score: 0.3 — it ignores the question. FAIL", 0.3, False),  # no JSON at all
    ],
)
async def test_llm_rubric_survives_malformed_judge_json(reply: str, score: float, passed: bool) -> None:
    judge, _ = scripted_judge(reply)
    result = await verdict({"type": "llm-rubric", "value": "answers the question"}, "x", judge=judge)
    assert (result.passed, result.score) == (passed, pytest.approx(score))


async def test_a_judge_without_a_verdict_is_asked_again_then_fails_the_assertion() -> None:
    judge, sent = scripted_judge("I think it is nice.", "Still no JSON, sorry.")
    result = await verdict({"type": "llm-rubric", "value": "is polite"}, "x", judge=judge)
    assert not result.passed and result.score == 0.0
    assert "no verdict" in result.reason and "Still no JSON" in result.reason
    assert len(sent) == 2 and "only the JSON" in sent[1][-1]["content"]  # the re-ask carries a reminder
    judge, _ = scripted_judge("nothing useful", '{"pass": true, "score": 1}')
    assert (await verdict({"type": "llm-rubric", "value": "is polite"}, "x", judge=judge)).passed


async def test_a_failing_judge_model_fails_the_assertion_with_the_reason() -> None:
    judge, _ = scripted_judge()  # raises: no replies
    result = await verdict({"type": "llm-rubric", "value": "is polite"}, "x", judge=judge)
    assert not result.passed and "judge model 'judge' failed" in result.reason


async def test_factuality_against_the_reference() -> None:
    judge, sent = scripted_judge('{"pass": false, "score": 0, "reason": "says Lyon"}')
    result = await verdict({"type": "factuality"}, "Lyon", reference="Paris", judge=judge)
    assert not result.passed and result.reason == "says Lyon"
    assert "Reference answer:\nParis" in sent[0][-1]["content"]


async def test_pairwise_randomises_positions_and_asks_both_orders() -> None:
    judge, sent = scripted_judge('{"winner": "A", "reason": "a"}', '{"winner": "A", "reason": "a"}')
    result = await verdict({"type": "pairwise"}, "NEW answer", baseline="OLD answer", judge=judge)
    assert len(sent) == 2
    firsts = ["Answer A:\nNEW" in m[-1]["content"] for m in sent]
    assert firsts[0] != firsts[1]  # each answer was in position A once
    assert result.score == 0.5 and result.passed  # a position-biased judge ties, at the 0.5 default threshold
    judge, sent = scripted_judge('{"winner": "B"}', '{"winner": "B"}')
    again = await verdict({"type": "pairwise", "both_orders": False}, "NEW", baseline="OLD", judge=judge)
    assert len(sent) == 1
    new_was_b = "Answer B:\nNEW" in sent[0][-1]["content"]
    assert again.score == (1.0 if new_was_b else 0.0)


async def test_pairwise_positions_are_the_same_every_run() -> None:
    orders = []
    for _ in range(2):
        judge, sent = scripted_judge('{"winner": "tie"}')
        await verdict({"type": "pairwise", "both_orders": False}, "NEW", baseline="OLD", judge=judge)
        orders.append(sent[0][-1]["content"])
    assert orders[0] == orders[1]


# ---------------------------------------------------------------- registry and validation


async def test_a_registered_scorer_is_an_assertion_type() -> None:
    @scorer("shouting")
    def shouting(check: Check) -> Score:
        loud = check.output.text.isupper()
        return Score(float(loud), loud, "all caps" if loud else "not all caps")

    try:
        assert (await verdict({"type": "shouting"}, "HEY")).passed
        assert (await verdict({"type": "not-shouting"}, "hey")).passed
    finally:
        del REGISTRY["shouting"]


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"type": "containz", "value": "x"}, "tests[0].assert[0].type: unknown assertion 'containz' (known: "),
        ({"type": "regex", "value": "("}, "tests[0].assert[0]: invalid regular expression"),
        ({"type": "contains"}, "tests[0].assert[0]: 'contains' needs a `value`"),
        ({"type": "json-schema", "value": {"type": 3}}, "tests[0].assert[0]: invalid JSON schema"),
        ({"type": "json-path", "path": "$.a[?(@.b)]", "value": 1}, "unsupported JSONPath"),
        ({"type": "length"}, "'length' needs `min` and/or `max`"),
        ({"type": "numeric", "value": "ten"}, "'numeric' needs the expected number"),
        ({"type": "similar"}, "'similar' needs the text to compare with"),
        ({"type": "factuality"}, "'factuality' needs a reference"),
        ({"type": "pairwise"}, "'pairwise' needs the baseline output"),
        ({"type": "python", "value": "nosuchmodule_xyz:check"}, "cannot load python check"),
        ({"type": "contains", "value": "x", "weight": -1}, "tests[0].assert[0].weight: must be a number ≥ 0"),
    ],
)
def test_invalid_assertions_are_reported_with_their_path(spec: dict[str, Any], message: str) -> None:
    test = {"messages": [{"role": "user", "content": "hi"}], "assert": [spec]}
    with pytest.raises(UsageError) as raised:
        parse_suite({"judge": "judge", "tests": [test]}, source="s.yaml")
    assert message in str(raised.value)
    assert str(raised.value).startswith("s.yaml: ")


def test_judged_assertions_need_a_judge() -> None:
    test = {"messages": [{"role": "user", "content": "hi"}], "assert": [{"type": "llm-rubric", "value": "polite"}]}
    with pytest.raises(UsageError, match=r"needs a judge: add `judge: \{model: NAME\}`"):
        parse_suite({"tests": [test]})
