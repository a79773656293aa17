"""Assertions: a registry of scorers, each one callable registered by name with `@scorer("name")`.

A scorer takes a `Check` (the assertion, the output, the case, the judge) and returns a
`Score` (0 to 1, optionally its own pass/fail, and a one-line reason), sync or async. Any type
can be negated with a `not-` prefix (`not-contains`, `not-regex`, `not-similar`): the pass
flips and the score becomes 1 - score.

Pass rule: with a `threshold`, an assertion passes iff its score ≥ threshold; without one,
the scorer's own verdict decides (exact checks), else its default threshold (`similar`
0.75, judged scores 0.5). A scorer that raises (a judge that gave no verdict, a broken
custom function) fails its assertion with the reason; it never stops the run.

JSONPath (for `json-path`): `$`, `.key`, `['key']` / `["key"]`, `[n]` (negative counts from
the end) and `[*]` (every element; the values are compared as a list) — no filters or slices.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from modelplane.evals.pythoncheck import load_check
from modelplane.evals.results import AssertionResult

if TYPE_CHECKING:
    from modelplane.evals.judges import Judge
    from modelplane.evals.suite import Assertion, Case, Suite

Similarity = Callable[[str, str], Awaitable[float]]


@dataclass(frozen=True, slots=True)
class Output:
    """What the target answered, with what it cost."""

    text: str
    cost_usd: float | None = None
    latency_ms: float = 0.0
    input_tokens: int = 0
    output_tokens: int = 0
    model: str | None = None


@dataclass(frozen=True, slots=True)
class Score:
    score: float  # in [0, 1]
    passed: bool | None = None  # None: the threshold decides
    reason: str = ""


@dataclass(frozen=True, slots=True)
class Check:
    """Everything a scorer may look at."""

    assertion: Assertion
    output: Output
    case: Case
    judge: Judge | None = None
    similarity: Similarity | None = None


Scorer = Callable[[Check], "Score | Awaitable[Score]"]
Prepare = Callable[["Assertion", "Case", "Suite", "Path | None"], "Assertion | str"]


@dataclass(frozen=True, slots=True)
class Registered:
    name: str
    run: Scorer
    prepare: Prepare | None
    threshold: float  # when the scorer gives no verdict and the assertion no threshold


REGISTRY: dict[str, Registered] = {}
ALIASES: dict[str, str] = {}


def scorer(
    name: str, *aliases: str, prepare: Prepare | None = None, threshold: float = 1.0
) -> Callable[[Scorer], Scorer]:
    """Register a scorer under `name` (and promptfoo's `aliases`); a later registration replaces it."""

    def register(run: Scorer) -> Scorer:
        REGISTRY[name] = Registered(name, run, prepare, threshold)
        for alias in aliases:
            ALIASES[alias] = name
        return run

    return register


def resolve_type(text: str) -> tuple[str, bool, str | None]:
    """(canonical name, negated, problem) for an assertion's `type`."""
    name = text.strip().lower()
    negate = name.startswith("not-") and name.removeprefix("not-") in (*REGISTRY, *ALIASES)
    if negate:
        name = name.removeprefix("not-")
    name = ALIASES.get(name, name)
    if name not in REGISTRY:
        return name, False, f"unknown assertion '{text}' (known: {', '.join(sorted(REGISTRY))}; any takes not-)"
    return name, negate, None


def prepare(assertion: Assertion, case: Case, suite: Suite, base: Path | None) -> Assertion | str:
    """Check an assertion before the run (and resolve files it names); a string is the problem."""
    entry = REGISTRY[assertion.type]
    return assertion if entry.prepare is None else entry.prepare(assertion, case, suite, base)


async def score(check: Check) -> AssertionResult:
    """Run one assertion; never raises."""
    a = check.assertion
    entry = REGISTRY[a.type]
    try:
        result = entry.run(check)
        if inspect.isawaitable(result):
            result = await result
        assert isinstance(result, Score)
    except Exception as exc:  # a failing scorer fails its assertion, not the run
        reason = str(exc) or type(exc).__name__
        result = Score(0.0, False, " ".join(reason.split())[:300])
    value = min(1.0, max(0.0, float(result.score)))
    if a.threshold is not None:
        passed = value >= a.threshold
    elif result.passed is not None:
        passed = result.passed
    else:
        passed = value >= entry.threshold
    if a.negate:
        passed, value = not passed, 1.0 - value
    return AssertionResult(a.label, passed, value, a.weight, result.reason, a.threshold)


# ---------------------------------------------------------------- preparing


def _needs_value(*kinds: type) -> Prepare:
    def check(a: Assertion, case: Case, suite: Suite, base: Path | None) -> Assertion | str:
        if a.value is None or (kinds and not isinstance(a.value, kinds)) or isinstance(a.value, bool):
            return f"'{a.label}' needs a `value` ({' or '.join(k.__name__ for k in kinds) or 'any'})"
        return a

    return check


def _needs_judge(reference: str | None = None) -> Prepare:
    def check(a: Assertion, case: Case, suite: Suite, base: Path | None) -> Assertion | str:
        if suite.judge is None:
            return f"'{a.label}' needs a judge: add `judge: {{model: NAME}}` to the suite"
        if reference == "rubric" and not isinstance(a.value, str):
            return f"'{a.label}' needs the rubric as its `value`"
        if reference == "reference" and a.value is None and case.reference is None:
            return f"'{a.label}' needs a reference: a `value`, or `reference` on the test"
        if reference == "baseline" and a.value is None and case.baseline is None:
            return f"'{a.label}' needs the baseline output: a `value`, or `baseline` on the test"
        return a

    return check


def _prepare_regex(a: Assertion, case: Case, suite: Suite, base: Path | None) -> Assertion | str:
    if not isinstance(a.value, str):
        return f"'{a.label}' needs a pattern as its `value`"
    try:
        re.compile(a.value)
    except re.error as exc:
        return f"invalid regular expression {a.value!r}: {exc}"
    return a


def _prepare_schema(a: Assertion, case: Case, suite: Suite, base: Path | None) -> Assertion | str:
    schema = a.value
    if a.type == "is-json" and schema is None:
        return a
    if isinstance(schema, str):  # a file, relative to the suite
        path = Path(schema.removeprefix("file://"))
        path = path if path.is_absolute() or base is None else base / path
        try:
            schema = orjson.loads(path.read_bytes()) if path.suffix == ".json" else _yaml(path)
        except (OSError, ValueError) as exc:
            return f"cannot read JSON schema {path}: {exc}"
    if not isinstance(schema, dict):
        return f"'{a.label}' needs a JSON schema (a mapping or a .json file) as its `value`"
    from jsonschema import exceptions, validators

    try:
        validators.validator_for(schema).check_schema(schema)
    except exceptions.SchemaError as exc:
        return f"invalid JSON schema: {exc.message}"
    return replace(a, value=schema)


def _yaml(path: Path) -> Any:
    import yaml

    return yaml.safe_load(path.read_text(encoding="utf-8"))


def _prepare_json_path(a: Assertion, case: Case, suite: Suite, base: Path | None) -> Assertion | str:
    path = a.options.get("path")
    if not isinstance(path, str):
        return "'json-path' needs a `path` ($.key[0]) and the `value` it must equal"
    try:
        _json_path_steps(path)
    except ValueError as exc:
        return str(exc)
    return a


def _prepare_numeric(a: Assertion, case: Case, suite: Suite, base: Path | None) -> Assertion | str:
    tolerance = a.options.get("tolerance", 0)
    if isinstance(a.value, bool) or not isinstance(a.value, int | float):
        return "'numeric' needs the expected number as its `value`"
    if isinstance(tolerance, bool) or not isinstance(tolerance, int | float) or tolerance < 0:
        return "'numeric' tolerance must be a number ≥ 0"
    return a


def _prepare_length(a: Assertion, case: Case, suite: Suite, base: Path | None) -> Assertion | str:
    bounds = a.value if isinstance(a.value, dict) else a.options
    low, high = bounds.get("min"), bounds.get("max")
    if isinstance(a.value, int) and not isinstance(a.value, bool):
        low, high = None, a.value
    if low is None and high is None:
        return "'length' needs `min` and/or `max` (characters; `unit: words` counts words)"
    if any(b is not None and (isinstance(b, bool) or not isinstance(b, int) or b < 0) for b in (low, high)):
        return "'length' bounds must be whole numbers ≥ 0"
    if bounds.get("unit", "chars") not in ("chars", "words"):
        return "'length' unit must be chars or words"
    return replace(a, options={**a.options, "min": low, "max": high, "unit": bounds.get("unit", "chars")})


def _prepare_similar(a: Assertion, case: Case, suite: Suite, base: Path | None) -> Assertion | str:
    if not isinstance(a.value, str) and case.reference is None:
        return "'similar' needs the text to compare with: a `value`, or `reference` on the test"
    return a


def _prepare_python(a: Assertion, case: Case, suite: Suite, base: Path | None) -> Assertion | str:
    if not isinstance(a.value, str) or not a.value.strip():
        return "'python' needs `value`: module:function, path/to/file.py[:function], or an expression of `output`"
    try:
        resolved = load_check(a.value, base)
    except (ImportError, OSError, SyntaxError, AttributeError, ValueError) as exc:
        return f"cannot load python check {a.value!r}: {exc}"
    return replace(a, value=resolved.ref)


# ---------------------------------------------------------------- deterministic scorers


def _text(value: Any) -> str:
    return value if isinstance(value, str) else orjson.dumps(value).decode()


def _verdict(passed: bool, says: str) -> Score:
    return Score(1.0 if passed else 0.0, passed, says)


def _short(text: str, limit: int = 60) -> str:
    flat = " ".join(text.split())
    return repr(flat if len(flat) <= limit else flat[:limit] + "…")


@scorer("equals", "equal", prepare=_needs_value())
def equals(check: Check) -> Score:
    expected, output = check.assertion.value, check.output.text
    if isinstance(expected, dict | list):
        parsed = _parse_json(output)
        return _verdict(
            parsed == expected, f"output JSON {'equals' if parsed == expected else 'differs from'} the value"
        )
    same = output.strip() == _text(expected).strip()
    return _verdict(same, f"output {_short(output)} {'equals' if same else 'is not'} {_short(_text(expected))}")


@scorer("contains", prepare=_needs_value(str, int, float))
def contains(check: Check) -> Score:
    needle = _text(check.assertion.value)
    found = needle in check.output.text
    return _verdict(found, f"output {'contains' if found else 'does not contain'} {needle!r}")


@scorer("icontains", prepare=_needs_value(str, int, float))
def icontains(check: Check) -> Score:
    needle = _text(check.assertion.value)
    found = needle.lower() in check.output.text.lower()
    return _verdict(found, f"output {'contains' if found else 'does not contain'} {needle!r} (any case)")


def _needles(value: Any) -> list[str]:
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return [_text(v) for v in value] if isinstance(value, list) else [_text(value)]


def _contains_some(check: Check, every: bool, fold: bool) -> Score:
    text = check.output.text.lower() if fold else check.output.text
    needles = _needles(check.assertion.value)
    found = [n for n in needles if (n.lower() if fold else n) in text]
    passed = len(found) == len(needles) if every else bool(found)
    missing = [n for n in needles if n not in found]
    says = f"found {len(found)}/{len(needles)}" + (f"; missing {missing[:3]}" if missing else "")
    return Score(len(found) / len(needles) if every else float(passed), passed, says)


scorer("contains-any", prepare=_needs_value(str, list))(lambda c: _contains_some(c, every=False, fold=False))
scorer("contains-all", prepare=_needs_value(str, list))(lambda c: _contains_some(c, every=True, fold=False))
scorer("icontains-any", prepare=_needs_value(str, list))(lambda c: _contains_some(c, every=False, fold=True))
scorer("icontains-all", prepare=_needs_value(str, list))(lambda c: _contains_some(c, every=True, fold=True))


@scorer("regex", prepare=_prepare_regex)
def regex(check: Check) -> Score:
    found = re.search(check.assertion.value, check.output.text) is not None
    return _verdict(found, f"output {'matches' if found else 'does not match'} /{check.assertion.value}/")


@scorer("starts-with", prepare=_needs_value(str, int, float))
def starts_with(check: Check) -> Score:
    prefix = _text(check.assertion.value)
    ok = check.output.text.lstrip().startswith(prefix)
    return _verdict(ok, f"output {'starts' if ok else 'does not start'} with {prefix!r}")


_FENCE = re.compile(r"^\s*```[\w-]*\s*\n(.*?)\n?```\s*$", re.DOTALL)
_MISSING = object()


def _parse_json(text: str) -> Any:
    """The output as JSON (a single ```json fenced block counts); `_MISSING` when it is not JSON."""
    fenced = _FENCE.match(text)
    try:
        return orjson.loads(fenced.group(1) if fenced else text.strip())
    except orjson.JSONDecodeError:
        return _MISSING


def _schema_errors(value: Any, schema: dict[str, Any]) -> str | None:
    from jsonschema import validators

    validator = validators.validator_for(schema)(schema)
    error = next(iter(validator.iter_errors(value)), None)
    if error is None:
        return None
    where = "/".join(str(p) for p in error.absolute_path) or "(root)"
    return f"{where}: {error.message}"


@scorer("is-json", prepare=_prepare_schema)
def is_json(check: Check) -> Score:
    value = _parse_json(check.output.text)
    if value is _MISSING:
        return _verdict(False, f"output is not JSON: {_short(check.output.text)}")
    if isinstance(check.assertion.value, dict):
        problem = _schema_errors(value, check.assertion.value)
        if problem is not None:
            return _verdict(False, f"JSON breaks the schema at {problem}")
    return _verdict(True, "output is valid JSON")


@scorer("json-schema", "contains-json-schema", prepare=_prepare_schema)
def json_schema(check: Check) -> Score:
    value = _parse_json(check.output.text)
    if value is _MISSING:
        return _verdict(False, f"output is not JSON: {_short(check.output.text)}")
    problem = _schema_errors(value, check.assertion.value)
    return _verdict(problem is None, "output matches the schema" if problem is None else f"schema: {problem}")


_STEP = re.compile(r"\.([A-Za-z_][\w-]*)|\[\s*(-?\d+|\*|'[^']*'|\"[^\"]*\")\s*\]")


def _json_path_steps(path: str) -> list[str | int]:
    text = path.strip()
    if not text.startswith("$"):
        raise ValueError(f"JSONPath {path!r} must start with $")
    steps: list[str | int] = []
    position = 1
    while position < len(text):
        match = _STEP.match(text, position)
        if match is None:
            raise ValueError(f"unsupported JSONPath {path!r} at {text[position:]!r} (supported: .key ['key'] [n] [*])")
        name, bracket = match.group(1), match.group(2)
        if name is not None:
            steps.append(name)
        elif bracket == "*":
            steps.append("*")
        elif bracket[0] in "'\"":
            steps.append(bracket[1:-1])
        else:
            steps.append(int(bracket))
        position = match.end()
    return steps


def _follow(value: Any, steps: list[str | int]) -> Any:
    for i, step in enumerate(steps):
        if step == "*":
            if not isinstance(value, list):
                return _MISSING
            return [_follow(item, steps[i + 1 :]) for item in value]
        found = isinstance(step, int) and isinstance(value, list) and -len(value) <= step < len(value)
        if found or (isinstance(step, str) and isinstance(value, dict) and step in value):
            value = value[step]
        else:
            return _MISSING
    return value


@scorer("json-path", "jsonpath", prepare=_prepare_json_path)
def json_path(check: Check) -> Score:
    document = _parse_json(check.output.text)
    if document is _MISSING:
        return _verdict(False, f"output is not JSON: {_short(check.output.text)}")
    path = check.assertion.options["path"]
    found = _follow(document, _json_path_steps(path))
    if found is _MISSING or (isinstance(found, list) and _MISSING in found):
        return _verdict(False, f"{path} is not in the output")
    if check.assertion.value is None:
        return _verdict(True, f"{path} is present")
    same = found == check.assertion.value
    return _verdict(
        same, f"{path} is {_short(_text(found))}" + ("" if same else f", not {_text(check.assertion.value)}")
    )


_NUMBER = re.compile(r"[-+]?(?:\d+(?:,\d{3})*(?:\.\d+)?|\.\d+)(?:[eE][-+]?\d+)?")


@scorer("numeric", "number", prepare=_prepare_numeric)
def numeric(check: Check) -> Score:
    expected, tolerance = float(check.assertion.value), float(check.assertion.options.get("tolerance", 0))
    match = _NUMBER.search(check.output.text)
    if match is None:
        return _verdict(False, f"no number in the output: {_short(check.output.text)}")
    found = float(match.group(0).replace(",", ""))
    ok = abs(found - expected) <= tolerance
    return _verdict(ok, f"found {found:g}, expected {expected:g} ± {tolerance:g}")


@scorer("length", prepare=_prepare_length)
def length(check: Check) -> Score:
    options = check.assertion.options
    unit = options["unit"]
    size = len(check.output.text.split()) if unit == "words" else len(check.output.text)
    low, high = options["min"], options["max"]
    ok = (low is None or size >= low) and (high is None or size <= high)
    bounds = f"[{'' if low is None else low}, {'' if high is None else high}]"
    return _verdict(ok, f"{size} {unit} {'within' if ok else 'outside'} {bounds}")


@scorer("cost", prepare=_needs_value(int, float))
def cost(check: Check) -> Score:
    spent, ceiling = check.output.cost_usd, float(check.assertion.value)
    if spent is None:
        return _verdict(False, "cost unknown (the model has no price)")
    return _verdict(spent <= ceiling, f"cost ${spent:.6f} vs ceiling ${ceiling:.6f}")


@scorer("latency", prepare=_needs_value(int, float))
def latency(check: Check) -> Score:
    took, ceiling = check.output.latency_ms, float(check.assertion.value)
    return _verdict(took <= ceiling, f"latency {took:.0f} ms vs ceiling {ceiling:.0f} ms")


# ---------------------------------------------------------------- meaning and judges


@scorer("similar", "similarity", "embedding-similarity", prepare=_prepare_similar, threshold=0.75)
async def similar(check: Check) -> Score:
    reference = check.assertion.value if isinstance(check.assertion.value, str) else check.case.reference
    assert reference is not None and check.similarity is not None
    value = await check.similarity(check.output.text, reference)
    return Score(max(0.0, value), None, f"similarity {value:.3f} to {_short(reference, 40)}")


def _judge(check: Check) -> Judge:
    if check.judge is None:
        raise ValueError("no judge: add `judge: {model: NAME}` to the suite")
    return check.judge


@scorer("llm-rubric", "model-graded-rubric", prepare=_needs_judge("rubric"), threshold=0.5)
async def llm_rubric(check: Check) -> Score:
    verdict = await _judge(check).rubric(check.assertion.value, check.case.question, check.output.text)
    return Score(verdict.score, verdict.passed, verdict.reason)


@scorer("factuality", "model-graded-factuality", prepare=_needs_judge("reference"), threshold=0.5)
async def factuality(check: Check) -> Score:
    reference = check.assertion.value if check.assertion.value is not None else check.case.reference
    verdict = await _judge(check).factuality(check.case.question, _text(reference), check.output.text)
    return Score(verdict.score, verdict.passed, verdict.reason)


@scorer("pairwise", prepare=_needs_judge("baseline"), threshold=0.5)
async def pairwise(check: Check) -> Score:
    a = check.assertion
    baseline = _text(a.value if a.value is not None else check.case.baseline)
    seed = int.from_bytes(check.case.id.encode()[:8].ljust(8, b"\0"), "big")  # the same positions every run
    both = bool(a.options.get("both_orders", True))
    verdict = await _judge(check).pairwise(check.case.question, check.output.text, baseline, seed, both)
    return Score(verdict.score, verdict.passed, verdict.reason)


@scorer("python", prepare=_prepare_python, threshold=0.5)
async def python(check: Check) -> Score:
    call = load_check(check.assertion.value, None)
    context = {
        "vars": check.case.vars,
        "reference": check.case.reference,
        "case_id": check.case.id,
        "description": check.case.description,
        "tags": check.case.tags,
        "messages": check.case.messages,
        "cost_usd": check.output.cost_usd,
        "latency_ms": check.output.latency_ms,
        "model": check.output.model,
        "config": check.assertion.options,
    }
    result = call.function(check.output.text, context)
    if inspect.isawaitable(result):
        result = await result
    return _from_python(result)


def _from_python(result: Any) -> Score:
    """promptfoo's shapes: a bool, a score, or {pass, score, reason} (also a Score)."""
    if isinstance(result, Score):
        return result
    if isinstance(result, bool):
        return _verdict(result, "custom check " + ("passed" if result else "failed"))
    if isinstance(result, int | float):
        return Score(float(result), None, f"custom score {result:g}")
    if isinstance(result, dict):
        passed = result.get("pass", result.get("pass_"))
        value = result.get("score", 1.0 if passed else 0.0)
        return Score(float(value), None if passed is None else bool(passed), str(result.get("reason", "")))
    raise ValueError(f"a python check returns a bool, a number or {{pass, score, reason}}, not {type(result).__name__}")
