"""Suites: YAML in promptfoo's shape, the Python API, templates, case ids and one-line errors with paths."""

from __future__ import annotations

from pathlib import Path

import pytest

from modelplane.errors import UsageError
from modelplane.evals.suite import Assertion, Case, Suite, Target, load_suite, parse_suite, render

SUITE = """
description: support replies stay polite
target: {feature: support, params: {temperature: 0}}
judge: {model: judge}
repeats: 2
prompts:
  - "Reply to: {{message}}"
  - [{role: system, content: "Be brief."}, {role: user, content: "{{message}} (order {{order.id}})"}]
defaultTest:
  vars: {order: {id: 7}}
  assert: [{type: not-contains, value: "As an AI"}]
gate: {pass_rate: 0.9}
tests:
  - description: refund
    vars: {message: "I want a refund"}
    tags: [billing]
    reference: "We will refund you."
    assert:
      - {type: icontains, value: refund, weight: 2}
      - {type: llm-rubric, value: "is polite", threshold: 0.7}
  - id: greeting
    messages: [{role: user, content: "Hello there"}]
    threshold: 0.5
"""


def test_a_yaml_suite_becomes_cases(tmp_path: Path) -> None:
    path = tmp_path / "support.yaml"
    path.write_text(SUITE)
    suite = load_suite(path)
    assert (suite.name, suite.description, suite.judge, suite.repeats) == (
        "support", "support replies stay polite", "judge", 2,
    )  # fmt: skip
    assert suite.target == Target(feature="support", params={"temperature": 0})
    assert suite.gate == {"pass_rate": 0.9}
    assert len(suite.cases) == 3  # the first test runs against both prompts
    first, second, greeting = suite.cases
    assert first.messages == [{"role": "user", "content": "Reply to: I want a refund"}]
    assert second.messages[1] == {"role": "user", "content": "I want a refund (order 7)"}
    assert len({first.id, second.id, greeting.id}) == 3
    assert [a.label for a in first.assertions] == ["not-contains", "icontains", "llm-rubric"]
    assert first.assertions[1].weight == 2 and first.assertions[2].threshold == 0.7
    assert (first.tags, first.reference, first.question) == (
        ["billing"],
        "We will refund you.",
        "Reply to: I want a refund",
    )
    assert (greeting.id, greeting.threshold, greeting.messages[0]["content"]) == ("greeting", 0.5, "Hello there")


def test_case_ids_are_stable_across_loads(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(SUITE)
    assert [c.id for c in load_suite(path).cases] == [c.id for c in load_suite(path).cases]


def test_the_python_api_builds_the_same_objects() -> None:
    case = Case.ask("capital", "Capital of France?", Assertion("icontains", "paris"), tags=["geo"])
    suite = Suite("geo", [case], Target(model="small"))
    assert suite.cases[0].messages == [{"role": "user", "content": "Capital of France?"}]
    assert suite.target.label == "model:small" and Target(feature="x").label == "feature:x"


def test_render_fills_plain_and_dotted_variables() -> None:
    assert render("{{ a }} and {{b.c}} and {{ d }}", {"a": "x", "b": {"c": 2}, "d": [1]}) == "x and 2 and [1]"
    with pytest.raises(KeyError):
        render("{{ missing }}", {})


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"tests": []}, "tests: a suite needs a non-empty list of tests"),
        ({"tests": [{"vars": {"m": 1}}]}, "tests[0]: no input: give top-level `prompts`"),
        ({"prompts": ["{{m}}"], "tests": [{"vars": {}}]}, "the prompt uses {{m}}, which the test's vars do not set"),
        ({"prompts": ["x"], "tests": [{"asert": []}]}, "tests[0].asert: unknown field (known: "),
        ({"prompts": ["x"], "tests": [{}], "repeats": 0}, "repeats: must be a whole number ≥ 1"),
        ({"prompts": ["x"], "tests": [{}], "target": {"feature": "a", "model": "b"}}, "target: name exactly one"),
        ({"prompts": ["x"], "tests": [{}, {}]}, "repeats case id"),
        (
            {"prompts": ["x"], "tests": [{"tags": "a", "threshold": 2}]},
            "tests[0].threshold: must be a number in [0, 1]",
        ),
        ({"prompts": ["x"], "tests": [{"assert": [{"value": 1}]}]}, "tests[0].assert[0]: an assertion is a mapping"),
        ({"prompts": ["x"], "tests": [{}], "gate": {"alpha": 0}}, "gate.alpha: must be a number strictly between"),
        ({"prompts": ["x"], "tests": [{}], "gate": {"alpha": 1}}, "gate.alpha: must be a number strictly between"),
    ],
)
def test_problems_name_their_path(raw: dict[str, object], message: str) -> None:
    with pytest.raises(UsageError) as raised:
        parse_suite(raw, source="s.yaml")
    assert message in str(raised.value)


def test_every_problem_is_listed_at_once() -> None:
    raw = {
        "prompts": ["{{q}}"],
        "tests": [
            {"vars": {"q": "a"}, "assert": [{"type": "containz", "value": "a"}]},
            {"vars": {"q": "b"}, "assert": [{"type": "regex", "value": "("}]},
        ],
    }
    with pytest.raises(UsageError) as raised:
        parse_suite(raw, source="s.yaml")
    text = str(raised.value)
    assert text.startswith("s.yaml: 2 problems")
    assert "tests[0].assert[0].type: unknown assertion 'containz'" in text
    assert "tests[1].assert[0]: invalid regular expression" in text


def test_unreadable_and_invalid_yaml_files(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="cannot read suite"):
        load_suite(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("tests: [\n")
    with pytest.raises(UsageError, match="not valid YAML at line"):
        load_suite(bad)


def test_a_prompt_change_keeps_case_ids_so_runs_still_pair() -> None:
    tests = [{"vars": {"m": "a"}}, {"vars": {"m": "b"}, "id": "named"}]
    before = parse_suite({"prompts": ["Reply to {{m}}"], "tests": tests})
    after = parse_suite({"prompts": ["Answer politely: {{m}}"], "tests": tests})
    assert [c.id for c in before.cases] == [c.id for c in after.cases]
    assert before.cases[1].id == "named"
    changed = parse_suite({"prompts": ["Reply to {{m}}"], "tests": [{"vars": {"m": "c"}}]})
    assert changed.cases[0].id != before.cases[0].id  # other input, other case
