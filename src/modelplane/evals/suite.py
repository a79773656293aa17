"""Eval suites: promptfoo-familiar YAML, or the same objects built in Python.

    description: support replies stay polite
    target: {feature: support-reply}            # or {model: local-small}; params: {temperature: 0}
    judge: {model: local-small}                 # for llm-rubric, factuality, pairwise
    repeats: 1
    prompts: ["Reply to: {{message}}"]          # strings (one user turn) or lists of chat messages
    defaultTest: {assert: [{type: not-contains, value: "As an AI"}]}
    gate: {pass_rate: 0.9}
    tests:
      - description: refund
        vars: {message: "I want a refund"}
        assert: [{type: icontains, value: refund, weight: 2}]

Every test runs against every prompt (a case each). A test may give `messages` instead of
`vars`, and `params` (temperature, max_tokens, …) over the target's. Templates substitute
`{{ name }}` and `{{ name.field }}` from the test's vars (a mapping or list is written as
JSON); nothing else of Jinja is supported. A case's id (which pairs it with the baseline's) is
the test's `id`, else a hash of the test's own vars and messages, plus `#pN` when there are
several prompts: editing a prompt or a description keeps the pairing. A suite is checked
whole before anything runs: every problem is reported with its path.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import yaml

from modelplane.errors import UsageError

Message = dict[str, Any]

# libyaml's loader when PyYAML has it: a 500-case suite loads in 0.1 s rather than 2 s.
SafeLoader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_VAR = re.compile(r"\{\{\s*([A-Za-z_][\w-]*(?:\.[\w-]+)*)\s*\}\}")
_SUITE_KEYS = ("description", "name", "target", "judge", "repeats", "prompts", "defaultTest", "gate", "tests")
_TEST_KEYS = (
    "description", "id", "vars", "messages", "reference", "baseline", "tags", "assert", "threshold", "params"
)  # fmt: skip
_ASSERT_KEYS = ("type", "value", "weight", "threshold", "metric")  # anything else is an option of the scorer


@dataclass(frozen=True, slots=True)
class Target:
    """What a suite evaluates: a feature through the whole gateway pipeline, or one configured model."""

    feature: str | None = None
    model: str | None = None
    params: dict[str, Any] = field(default_factory=dict)  # merged into every request body (temperature, …)

    @property
    def label(self) -> str:
        return f"feature:{self.feature}" if self.feature is not None else f"model:{self.model}"


@dataclass(frozen=True, slots=True)
class Assertion:
    """One check of an output. `negate` comes from a `not-` prefix; `options` holds the scorer's own keys."""

    type: str
    value: Any = None
    weight: float = 1.0
    threshold: float | None = None
    negate: bool = False
    options: dict[str, Any] = field(default_factory=dict)
    path: str = field(default="", compare=False)  # where the suite declares it: "tests[3].assert[0]"

    @property
    def label(self) -> str:
        return f"not-{self.type}" if self.negate else self.type


@dataclass(slots=True)
class Case:
    """One input and what its output must satisfy. `id` is stable across runs: baselines pair by it."""

    id: str
    messages: list[Message]
    assertions: list[Assertion] = field(default_factory=list)
    description: str = ""
    vars: dict[str, Any] = field(default_factory=dict)
    reference: str | None = None  # the expected answer (factuality, similar)
    baseline: str | None = None  # another output to beat (pairwise)
    tags: list[str] = field(default_factory=list)
    threshold: float | None = None  # set: the case passes iff its weighted score reaches it
    params: dict[str, Any] = field(default_factory=dict)  # per-case request parameters

    @classmethod
    def ask(cls, id: str, question: str, *assertions: Assertion, **fields: Any) -> Case:
        """A one-turn case: `Case.ask("capital", "Capital of France?", Assertion("icontains", "paris"))`."""
        return cls(id, [{"role": "user", "content": question}], list(assertions), **fields)

    @property
    def question(self) -> str:
        """The last user turn: what a judge is told the output answers."""
        for message in reversed(self.messages):
            if message.get("role") == "user" and isinstance(message.get("content"), str):
                return str(message["content"])
        return ""


@dataclass(slots=True)
class Suite:
    """Cases and their defaults: the target, the judge model, the repeats and the suite's own gate."""

    name: str
    cases: list[Case]
    target: Target
    judge: str | None = None  # a configured model
    repeats: int = 1
    description: str = ""
    gate: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None


class Issues:
    """Problems found in a suite, each located by its path."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.lines: list[str] = []

    def add(self, path: str, message: str) -> None:
        line = f"{path}: {message}" if path else message
        if line not in self.lines:  # a defaultTest problem would repeat once per test
            self.lines.append(line)

    def raise_any(self) -> None:
        if not self.lines:
            return
        if len(self.lines) == 1:
            raise UsageError(f"{self.source}: {self.lines[0]}", "fix the suite file and run again")
        listed = "\n  ".join(self.lines)
        raise UsageError(f"{self.source}: {len(self.lines)} problems\n  {listed}", "fix the suite file and run again")


def load_suite(path: Path) -> Suite:
    """Read and check a suite file. Raises UsageError listing every problem with its path."""
    try:
        raw = yaml.load(path.read_text(encoding="utf-8"), Loader=SafeLoader)  # safe: libyaml or PyYAML SafeLoader
    except OSError as exc:
        raise UsageError(f"cannot read suite {path}: {exc.strerror}", "pass an existing suite file") from exc
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise UsageError(f"{path}: not valid YAML{where}", "fix the suite file and run again") from exc
    return parse_suite(raw, source=str(path), base=path.parent, name=path.stem, path=path)


def parse_suite(
    raw: Any, *, source: str = "suite", base: Path | None = None, name: str = "suite", path: Path | None = None
) -> Suite:
    """Build a suite from parsed YAML; `base` resolves files the suite names (schemas, Python checks)."""
    from modelplane.evals.assertions import prepare  # the registry imports this module

    issues = Issues(source)
    if not isinstance(raw, dict):
        issues.add("", "a suite is a mapping with `tests` (and usually `prompts`)")
        issues.raise_any()
    _unknown(raw, _SUITE_KEYS, "", issues)
    target = _target(raw.get("target"), issues)
    judge = _judge(raw.get("judge"), issues)
    repeats = raw.get("repeats", 1)
    if isinstance(repeats, bool) or not isinstance(repeats, int) or repeats < 1:
        issues.add("repeats", "must be a whole number ≥ 1")
        repeats = 1
    prompts = _prompts(raw.get("prompts"), issues)
    default = raw.get("defaultTest") or {}
    if not isinstance(default, dict):
        issues.add("defaultTest", "must be a mapping (vars, assert, …)")
        default = {}
    tests = raw.get("tests")
    if not isinstance(tests, list) or not tests:
        issues.add("tests", "a suite needs a non-empty list of tests")
        tests = []
    cases: list[Case] = []
    for i, test in enumerate(tests):
        cases += _cases(test, default, prompts, f"tests[{i}]", issues)
    _unique_ids(cases, issues)
    gate = raw.get("gate") or {}
    if not isinstance(gate, dict):
        issues.add("gate", "must be a mapping (pass_rate, tag_pass_rate, mean_score, max_regressions)")
        gate = {}
    _check_gate(gate, issues)
    suite = Suite(
        str(raw.get("name") or name), cases, target, judge, repeats, str(raw.get("description") or ""), gate, path
    )
    for case in suite.cases:
        for j, assertion in enumerate(case.assertions):
            prepared = prepare(assertion, case, suite, base)
            if isinstance(prepared, str):
                issues.add(assertion.path, prepared)
            else:
                case.assertions[j] = prepared
    issues.raise_any()
    return suite


def render(template: str, variables: dict[str, Any]) -> str:
    """Substitute `{{ name }}` / `{{ name.field }}`; a missing variable raises KeyError with its name."""

    def value(match: re.Match[str]) -> str:
        found: Any = variables
        for part in match.group(1).split("."):
            if not isinstance(found, dict) or part not in found:
                raise KeyError(match.group(1))
            found = found[part]
        return found if isinstance(found, str) else orjson.dumps(found).decode()

    return _VAR.sub(value, template)


def _target(raw: Any, issues: Issues) -> Target:
    if raw is None:
        return Target(feature="chat")  # the embedded default's feature
    if isinstance(raw, str):  # "feature:NAME" / "model:NAME" shorthand
        kind, _, name = raw.partition(":")
        raw = {kind: name}
    if not isinstance(raw, dict):
        issues.add("target", "must be {feature: NAME} or {model: NAME}")
        return Target(feature="chat")
    _unknown(raw, ("feature", "model", "params"), "target", issues)
    feature, model, params = raw.get("feature"), raw.get("model"), raw.get("params") or {}
    if (feature is None) == (model is None) or not isinstance(feature or model, str):
        issues.add("target", "name exactly one of `feature` or `model`")
        return Target(feature="chat")
    if not isinstance(params, dict):
        issues.add("target.params", "must be a mapping of request parameters (temperature, max_tokens, …)")
        params = {}
    return Target(feature, model, params)


def _judge(raw: Any, issues: Issues) -> str | None:
    if raw is None or isinstance(raw, str):
        return raw
    if isinstance(raw, dict) and isinstance(raw.get("model"), str):
        _unknown(raw, ("model",), "judge", issues)
        return str(raw["model"])
    issues.add("judge", "must be {model: NAME}, a configured model")
    return None


def _prompts(raw: Any, issues: Issues) -> list[str | list[Message]]:
    if raw is None:
        return []
    items = raw if isinstance(raw, list) else [raw]
    prompts: list[str | list[Message]] = []
    for i, item in enumerate(items):
        if isinstance(item, dict) and isinstance(item.get("raw"), str):
            item = item["raw"]
        if isinstance(item, str) or (_is_messages(item)):
            prompts.append(item)
        else:
            issues.add(f"prompts[{i}]", "a prompt is a string or a list of {role, content} messages")
    return prompts


def _is_messages(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(m, dict) and isinstance(m.get("role"), str) for m in value)


def _cases(
    test: Any, default: dict[str, Any], prompts: list[str | list[Message]], path: str, issues: Issues
) -> list[Case]:
    if not isinstance(test, dict):
        issues.add(path, "a test is a mapping (vars, assert, …)")
        return []
    _unknown(test, _TEST_KEYS, path, issues)
    variables = {**_mapping(default, "vars", "defaultTest", issues), **_mapping(test, "vars", path, issues)}
    assertions = [
        *_assertions(default.get("assert"), "defaultTest.assert", issues),
        *_assertions(test.get("assert"), f"{path}.assert", issues),
    ]
    tags = test.get("tags") or []
    if isinstance(tags, str):
        tags = [tags]
    if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
        issues.add(f"{path}.tags", "must be a list of strings")
        tags = []
    threshold = test.get("threshold", default.get("threshold"))
    if threshold is not None and not _unit(threshold):
        issues.add(f"{path}.threshold", "must be a number in [0, 1]")
        threshold = None
    params = {**_mapping(default, "params", "defaultTest", issues), **_mapping(test, "params", path, issues)}
    base = Case(
        id="",
        messages=[],
        assertions=assertions,
        description=str(test.get("description") or ""),
        vars=variables,
        reference=_text(test.get("reference"), f"{path}.reference", issues),
        baseline=_text(test.get("baseline"), f"{path}.baseline", issues),
        tags=list(tags),
        threshold=threshold,
        params=params,
    )
    stem = _stem(test)
    if test.get("messages") is not None:
        if not _is_messages(test["messages"]):
            issues.add(f"{path}.messages", "must be a list of {role, content} messages")
            return []
        messages = _render_messages(test["messages"], variables, f"{path}.messages", issues)
        return [_with(base, messages, stem, None)]
    if not prompts:
        issues.add(path, "no input: give top-level `prompts` (with vars) or `messages` in the test")
        return []
    cases = []
    for j, prompt in enumerate(prompts):
        where = f"{path} (prompts[{j}])"
        if isinstance(prompt, str):
            messages = _render_messages([{"role": "user", "content": prompt}], variables, where, issues)
        else:
            messages = _render_messages(prompt, variables, where, issues)
        cases.append(_with(base, messages, stem, j if len(prompts) > 1 else None))
    return cases


def _with(base: Case, messages: list[Message], stem: str, prompt: int | None) -> Case:
    """A copy of `base` with its messages and id (`stem`, and the prompt's index when there are several)."""
    case_id = stem if prompt is None else f"{stem}#p{prompt}"
    return Case(
        case_id,
        messages,
        list(base.assertions),
        base.description,
        base.vars,
        base.reference,
        base.baseline,
        list(base.tags),
        base.threshold,
        dict(base.params),
    )


def _stem(test: dict[str, Any]) -> str:
    """A test's id: its `id`, else a hash of its own input (vars, messages, params). The prompt templates
    are left out, so a run after a prompt change still pairs case by case with the baseline's."""
    if test.get("id") is not None:
        return str(test["id"])
    own = [test.get("vars"), test.get("messages"), test.get("params")]
    return hashlib.sha256(orjson.dumps(own, option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS)).hexdigest()[:12]


def _render_messages(messages: list[Message], variables: dict[str, Any], path: str, issues: Issues) -> list[Message]:
    out = []
    for message in messages:
        content = message.get("content")
        if isinstance(content, str):
            try:
                content = render(content, variables)
            except KeyError as exc:
                issues.add(path, f"the prompt uses {{{{{exc.args[0]}}}}}, which the test's vars do not set")
        out.append({**message, "content": content})
    return out


def _assertions(raw: Any, path: str, issues: Issues) -> list[Assertion]:
    from modelplane.evals.assertions import resolve_type

    if raw is None:
        return []
    if not isinstance(raw, list):
        issues.add(path, "must be a list of assertions")
        return []
    out = []
    for i, item in enumerate(raw):
        where = f"{path}[{i}]"
        if not isinstance(item, dict) or not isinstance(item.get("type"), str):
            issues.add(where, "an assertion is a mapping with a `type`")
            continue
        name, negate, problem = resolve_type(item["type"])
        if problem is not None:
            issues.add(f"{where}.type", problem)
            continue
        weight = item.get("weight", 1.0)
        if isinstance(weight, bool) or not isinstance(weight, int | float) or weight < 0:
            issues.add(f"{where}.weight", "must be a number ≥ 0")
            weight = 1.0
        threshold = item.get("threshold")
        if threshold is not None and (isinstance(threshold, bool) or not isinstance(threshold, int | float)):
            issues.add(f"{where}.threshold", "must be a number")
            threshold = None
        options = {k: v for k, v in item.items() if k not in _ASSERT_KEYS}
        out.append(Assertion(name, item.get("value"), float(weight), threshold, negate, options, where))
    return out


def _unique_ids(cases: list[Case], issues: Issues) -> None:
    seen: set[str] = set()
    for case in cases:
        if case.id in seen:
            what = f"test {case.description!r}" if case.description else "a test"
            issues.add("tests", f"{what} repeats case id '{case.id}': give each test a distinct `id` or input")
        seen.add(case.id)


def _unknown(raw: dict[str, Any], known: tuple[str, ...], path: str, issues: Issues) -> None:
    for key in raw:
        if key not in known:
            where = f"{path}.{key}" if path else str(key)
            issues.add(where, f"unknown field (known: {', '.join(known)})")


def _text(value: Any, path: str, issues: Issues) -> str | None:
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, int | float | dict | list):
        return value if isinstance(value, str) else orjson.dumps(value).decode()
    issues.add(path, "must be text")
    return None


def _check_gate(gate: dict[str, Any], issues: Issues) -> None:
    _unknown(gate, ("pass_rate", "tag_pass_rate", "mean_score", "max_regressions", "alpha"), "gate", issues)
    for key in ("pass_rate", "mean_score"):
        if key in gate and not _unit(gate[key]):
            issues.add(f"gate.{key}", "must be a number in [0, 1]")
    if "alpha" in gate and not (_unit(gate["alpha"]) and 0 < gate["alpha"] < 1):
        issues.add("gate.alpha", "must be a number strictly between 0 and 1")
    tags = gate.get("tag_pass_rate", {})
    if not isinstance(tags, dict) or not all(_unit(v) for v in tags.values()):
        issues.add("gate.tag_pass_rate", "must map tags to numbers in [0, 1]")
    regressions = gate.get("max_regressions", 0)
    if isinstance(regressions, bool) or not isinstance(regressions, int) or regressions < 0:
        issues.add("gate.max_regressions", "must be a whole number ≥ 0")


def _mapping(raw: dict[str, Any], key: str, path: str, issues: Issues) -> dict[str, Any]:
    value = raw.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        issues.add(f"{path}.{key}", "must be a mapping")
        return {}
    return value


def _unit(value: Any) -> bool:
    return not isinstance(value, bool) and isinstance(value, int | float) and 0 <= value <= 1
