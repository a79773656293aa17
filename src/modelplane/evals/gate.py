"""The CI gate: does this eval run pass its thresholds, and did it regress against a baseline?

Cases are paired across runs by `case_id`. With repeats, a case *passes* when at least half
of its repeats pass (mean pass ≥ 0.5; with 2 repeats one pass is enough), and its score is
the mean score of its repeats; rates and regressions are over cases, not repeats, so a run
with 5 repeats is not 5x as "significant" as one with 1.

What fails the gate:

* a threshold that is set and not met: overall pass rate, a tag's pass rate (a tag no case
  carries fails too — a typo must not pass silently), mean score;
* no threshold set and no baseline: any failing case ("every case passes");
* with a baseline: more regressions (passed in the baseline, fail now) than
  `max_regressions` allows — 0 unless set, so by default any regression blocks the change —
  and, whatever `max_regressions` allows, a fall in pass rate that is significant at `alpha`
  by the exact McNemar test (tolerating a few flaky cases must not let a real drop through).

The McNemar p-value and the paired-bootstrap intervals (of the pass-rate and mean-score
differences, over the paired cases) are there to say how sure the difference is; cases
present in only one of the two runs are listed and left out of the comparison.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from modelplane.errors import UsageError
from modelplane.evals.results import CaseResult, RunResult
from modelplane.evals.stats import Interval, mcnemar_exact, paired_bootstrap

LIST_LIMIT = 50  # regressions / fixes printed by `lines()`; the JSON, JUnit and Markdown have their own


@dataclass
class GateThresholds:
    """What the run must meet; None (or an empty dict) means "not checked"."""

    pass_rate: float | None = None  # overall share of passing cases, in [0, 1]
    tag_pass_rate: dict[str, float] = field(default_factory=dict)  # per tag, in [0, 1]
    mean_score: float | None = None  # mean case score, in [0, 1]
    max_regressions: int | None = None  # with a baseline; None = 0
    alpha: float = 0.05  # significance level of the McNemar test; intervals are at 1 - alpha

    @property
    def explicit(self) -> bool:
        return self.pass_rate is not None or bool(self.tag_pass_rate) or self.mean_score is not None


@dataclass(frozen=True, slots=True)
class CaseOutcome:
    """One case of a run, its repeats folded together."""

    case_id: str
    description: str
    tags: tuple[str, ...]
    passed: bool  # mean pass over the repeats ≥ 0.5
    pass_fraction: float
    score: float  # mean over the repeats
    repeats: int
    reasons: tuple[str, ...]  # why it failed: failing assertions and errors, deduplicated
    errored: bool  # every repeat ended in a target error
    output: str  # the first failing repeat's output (else the first repeat's)
    cost_usd: float | None  # summed over repeats; None if any repeat's cost is unknown
    latency_ms: float  # mean over repeats


@dataclass(frozen=True, slots=True)
class CaseChange:
    """A case whose verdict changed between the baseline and this run."""

    case_id: str
    description: str
    tags: tuple[str, ...]
    score_before: float
    score_after: float
    reasons: tuple[str, ...]  # for a regression: why it fails now; for a fix: why it failed before

    @property
    def reason(self) -> str:
        return "; ".join(self.reasons)

    @property
    def label(self) -> str:
        return self.description or self.case_id


@dataclass(frozen=True, slots=True)
class Comparison:
    """This run against a baseline, over the cases both contain."""

    baseline_id: str
    paired: int
    baseline_pass_rate: float
    pass_rate: float
    regressions: int  # discordant: passed before, fails now (McNemar's b)
    fixes: int  # discordant: failed before, passes now (McNemar's c)
    mcnemar_p: float
    pass_rate_delta: Interval  # now - baseline, in [-1, 1]
    baseline_mean_score: float
    mean_score: float
    score_delta: Interval
    only_in_run: tuple[str, ...]
    only_in_baseline: tuple[str, ...]
    alpha: float

    @property
    def significant(self) -> bool:
        return self.mcnemar_p < self.alpha


@dataclass
class GateReport:
    """The gate's verdict and everything needed to explain it."""

    passed: bool
    failures: list[str]
    regressions: list[CaseChange]
    fixes: list[CaseChange]
    comparison: Comparison | None
    cases: int = 0
    passed_cases: int = 0
    pass_rate: float = 0.0
    mean_score: float = 0.0
    tag_pass_rates: dict[str, float] = field(default_factory=dict)
    failing: list[CaseOutcome] = field(default_factory=list)  # every failing case of this run
    notes: list[str] = field(default_factory=list)  # worth knowing, not failing

    def lines(self, verdict: bool = True) -> list[str]:
        """What the CLI prints: the verdict and why, the comparison in plain words, the changed cases.

        `verdict=False` leaves out the verdict and its reasons: a comparison without a gate.
        """
        out: list[str] = []
        if verdict:
            out.append(f"gate: {'PASSED' if self.passed else 'FAILED'}")
            out += [f"  ✗ {failure}" for failure in self.failures]
        out.append(
            f"pass rate {percent(self.pass_rate)} ({self.passed_cases} of {self.cases} cases), "
            f"mean score {self.mean_score:.2f}"
        )
        cmp = self.comparison
        if cmp is not None:
            out.append(pass_rate_sentence(cmp))
            out.append(score_sentence(cmp))
        for title, changes in (("regressions", self.regressions), ("fixes", self.fixes)):
            if changes:
                out.append(f"{title} ({len(changes)}):")
                out += [f"  {change_line(change)}" for change in changes[:LIST_LIMIT]]
                if len(changes) > LIST_LIMIT:
                    out.append(f"  … and {len(changes) - LIST_LIMIT} more")
        out += [f"note: {note}" for note in self.notes]
        return out


def load_baseline(ref: str, runs_dir: Path) -> RunResult:
    """The baseline run: `ref` is a run id in `runs_dir` or a path to a run JSON file."""
    candidates = [runs_dir / f"{ref}.json", runs_dir / ref, Path(ref)]
    path = next((p for p in candidates if p.is_file()), None)
    if path is None:
        raise UsageError(
            f"baseline {ref!r}: no run with that id in {runs_dir} and no such file",
            hint="pass a run id from `modelplane eval list` or the path to a saved run JSON",
        )
    try:
        return RunResult.load(path)
    except (ValueError, TypeError, KeyError, OSError) as exc:
        raise UsageError(f"baseline {path}: not a readable eval run ({exc})") from exc


def outcomes(run: RunResult) -> dict[str, CaseOutcome]:
    """The run's cases by `case_id`, repeats folded together, in the run's order."""
    groups: dict[str, list[CaseResult]] = {}
    for case in run.cases:
        groups.setdefault(case.case_id, []).append(case)
    return {case_id: _fold(repeats) for case_id, repeats in groups.items()}


def evaluate_gate(run: RunResult, thresholds: GateThresholds, baseline: RunResult | None = None) -> GateReport:
    """Check `run` against `thresholds` and, when given, against `baseline` (see the module docstring)."""
    now = outcomes(run)
    cases = list(now.values())
    passed_cases = sum(c.passed for c in cases)
    report = GateReport(
        passed=True,
        failures=[],
        regressions=[],
        fixes=[],
        comparison=None,
        cases=len(cases),
        passed_cases=passed_cases,
        pass_rate=passed_cases / len(cases) if cases else 0.0,
        mean_score=_mean([c.score for c in cases]),
        tag_pass_rates=_tag_pass_rates(cases),
        failing=[c for c in cases if not c.passed],
    )
    if not cases:
        report.failures.append("the run has no cases")
    _check_thresholds(report, thresholds)
    if baseline is None:
        if not thresholds.explicit and report.failing:
            report.failures.append(
                f"{len(report.failing)} of {len(cases)} cases failed "
                "(no thresholds and no baseline: every case must pass)"
            )
    else:
        _compare(report, now, outcomes(baseline), baseline, thresholds)
    report.passed = not report.failures
    return report


def _check_thresholds(report: GateReport, t: GateThresholds) -> None:
    if t.pass_rate is not None and report.pass_rate < t.pass_rate:
        report.failures.append(f"pass rate {percent(report.pass_rate)} is below the threshold {percent(t.pass_rate)}")
    for tag, minimum in t.tag_pass_rate.items():
        rate = report.tag_pass_rates.get(tag)
        if rate is None:
            report.failures.append(f"tag {tag!r}: no case carries it (threshold {percent(minimum)})")
        elif rate < minimum:
            report.failures.append(f"tag {tag!r}: pass rate {percent(rate)} is below the threshold {percent(minimum)}")
    if t.mean_score is not None and report.mean_score < t.mean_score:
        report.failures.append(f"mean score {report.mean_score:.3f} is below the threshold {t.mean_score:.3f}")


def _compare(
    report: GateReport,
    now: dict[str, CaseOutcome],
    before: dict[str, CaseOutcome],
    baseline: RunResult,
    t: GateThresholds,
) -> None:
    paired = [case_id for case_id in now if case_id in before]
    only_run = tuple(case_id for case_id in now if case_id not in before)
    only_base = tuple(case_id for case_id in before if case_id not in now)
    if only_run or only_base:
        report.notes.append(
            f"not compared: {len(only_run)} case(s) only in this run, {len(only_base)} only in the baseline"
        )
    new_failing = [case_id for case_id in only_run if not now[case_id].passed]
    if new_failing:
        report.notes.append(f"{len(new_failing)} new case(s) fail: {', '.join(new_failing[:10])}")
    if not paired:
        report.failures.append(f"no case of this run is in the baseline {baseline.id!r}: nothing to compare")
        return
    for case_id in paired:
        a, b = before[case_id], now[case_id]
        if a.passed and not b.passed:
            report.regressions.append(_change(a, b, b.reasons))
        elif b.passed and not a.passed:
            report.fixes.append(_change(a, b, a.reasons))
    pass_diffs = [int(now[i].passed) - int(before[i].passed) for i in paired]
    score_diffs = [now[i].score - before[i].score for i in paired]
    cmp = Comparison(
        baseline_id=baseline.id,
        paired=len(paired),
        baseline_pass_rate=_mean([float(before[i].passed) for i in paired]),
        pass_rate=_mean([float(now[i].passed) for i in paired]),
        regressions=len(report.regressions),
        fixes=len(report.fixes),
        mcnemar_p=mcnemar_exact(len(report.regressions), len(report.fixes)),
        pass_rate_delta=paired_bootstrap(pass_diffs, alpha=t.alpha),
        baseline_mean_score=_mean([before[i].score for i in paired]),
        mean_score=_mean([now[i].score for i in paired]),
        score_delta=paired_bootstrap(score_diffs, alpha=t.alpha),
        only_in_run=only_run,
        only_in_baseline=only_base,
        alpha=t.alpha,
    )
    report.comparison = cmp
    allowed = t.max_regressions or 0
    if cmp.regressions > allowed:
        report.failures.append(f"{cmp.regressions} regression(s) vs baseline {baseline.id!r} (allowed: {allowed})")
    elif cmp.regressions > cmp.fixes and cmp.significant:
        report.failures.append(
            f"pass rate fell significantly vs baseline {baseline.id!r} "
            f"(McNemar p = {p_value(cmp.mcnemar_p)} < {cmp.alpha:g}), though within {allowed} allowed regressions"
        )


def _fold(repeats: list[CaseResult]) -> CaseOutcome:
    first = repeats[0]
    pass_fraction = sum(r.passed for r in repeats) / len(repeats)
    failed = [r for r in repeats if not r.passed]
    reasons: dict[str, None] = {}
    for r in failed:
        if r.error:
            reasons[f"error: {r.error}"] = None
        for a in r.assertions:
            if not a.passed:
                reasons[f"{a.type}: {a.reason}" if a.reason else a.type] = None
        if not r.error and not any(not a.passed for a in r.assertions):
            reasons[f"score {r.score:.2f} below the case's threshold"] = None
    costs = [r.cost_usd for r in repeats]
    return CaseOutcome(
        case_id=first.case_id,
        description=first.description,
        tags=tuple(first.tags),
        passed=pass_fraction >= 0.5,
        pass_fraction=pass_fraction,
        score=_mean([r.score for r in repeats]),
        repeats=len(repeats),
        reasons=tuple(reasons),
        errored=all(r.error for r in repeats),
        output=(failed[0] if failed else first).output,
        cost_usd=None if any(c is None for c in costs) else sum(c for c in costs if c is not None),
        latency_ms=_mean([r.latency_ms for r in repeats]),
    )


def _change(before: CaseOutcome, after: CaseOutcome, reasons: tuple[str, ...]) -> CaseChange:
    return CaseChange(
        case_id=after.case_id,
        description=after.description or before.description,
        tags=after.tags,
        score_before=before.score,
        score_after=after.score,
        reasons=reasons,
    )


def _tag_pass_rates(cases: list[CaseOutcome]) -> dict[str, float]:
    counts: dict[str, list[int]] = {}
    for case in cases:
        for tag in case.tags:
            seen = counts.setdefault(tag, [0, 0])
            seen[0] += case.passed
            seen[1] += 1
    return {tag: passed / total for tag, (passed, total) in sorted(counts.items())}


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else 0.0


# --- plain words, shared by the CLI lines, the JUnit gate case and the Markdown summary ---


def percent(x: float) -> str:
    """0.92 → "92%", 0.925 → "92.5%"."""
    return f"{_num(100 * x)}%"


def points(x: float) -> str:
    """A difference of rates in percentage points, signed with a real minus: -0.08 → "-8 pts"."""
    return f"{_signed(100 * x)} pts"


def p_value(p: float) -> str:
    """A p-value for humans: 2 significant digits, "< 0.001" below that."""
    if p < 0.001:
        return "< 0.001"
    return f"{p:.2g}" if p < 0.1 else f"{p:.2f}".rstrip("0").rstrip(".")


def pass_rate_sentence(cmp: Comparison) -> str:
    """ "pass rate fell from 92% to 84% (-8 pts, 95% CI -12 to -4; McNemar p = 0.003) …" """
    d = cmp.pass_rate_delta
    change = _moved("pass rate", percent(cmp.baseline_pass_rate), percent(cmp.pass_rate), d.estimate)
    p = p_value(cmp.mcnemar_p)
    p_text = f"p {p}" if p.startswith("<") else f"p = {p}"
    ci = f"{percent(d.level)} CI {_signed(100 * d.low)} to {_signed(100 * d.high)}"
    verdict = "unlikely to be chance" if cmp.significant else "could be chance"
    return (
        f"{change} ({points(d.estimate)}, {ci}; McNemar {p_text}) over {cmp.paired} paired cases: "
        f"{cmp.regressions} regression(s), {cmp.fixes} fix(es) — {verdict} at \u03b1 = {cmp.alpha:g}"
    )


def score_sentence(cmp: Comparison) -> str:
    """ "mean score fell from 0.91 to 0.85 (-0.06, 95% CI -0.09 to -0.03)" """
    d = cmp.score_delta
    change = _moved("mean score", f"{cmp.baseline_mean_score:.2f}", f"{cmp.mean_score:.2f}", d.estimate)
    ci = f"{percent(d.level)} CI {_signed(d.low, 2)} to {_signed(d.high, 2)}"
    return f"{change} ({_signed(d.estimate, 2)}, {ci})"


def change_line(change: CaseChange) -> str:
    tags = f" [{', '.join(change.tags)}]" if change.tags else ""
    label = change.label if change.label == change.case_id else f"{change.label} ({change.case_id})"
    why = f" — {change.reason}" if change.reason else ""
    return f"{label}{tags}: score {change.score_before:.2f} → {change.score_after:.2f}{why}"


def _moved(what: str, before: str, after: str, delta: float) -> str:
    if before == after or abs(delta) < 1e-12:
        return f"{what} unchanged at {after}"
    return f"{what} {'rose' if delta > 0 else 'fell'} from {before} to {after}"


def _num(x: float, decimals: int = 1) -> str:
    text = f"{x:.{decimals}f}"
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def _signed(x: float, decimals: int = 1) -> str:
    text = _num(x, decimals)
    if text == "0":
        return "0"
    return text.replace("-", "\u2212") if text.startswith("-") else f"+{text}"
