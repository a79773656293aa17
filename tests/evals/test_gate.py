"""The gate: thresholds, repeats folded per case, regressions against a baseline and how sure they are."""

from __future__ import annotations

from pathlib import Path

import pytest

from evalruns import case, run, verdicts
from modelplane.errors import UsageError
from modelplane.evals.gate import GateThresholds, evaluate_gate, load_baseline, outcomes, p_value, percent


def test_no_thresholds_no_baseline_every_case_must_pass() -> None:
    assert evaluate_gate(verdicts([True] * 5, "r"), GateThresholds()).passed
    report = evaluate_gate(verdicts([True] * 4 + [False], "r"), GateThresholds())
    assert not report.passed
    assert report.failures == ["1 of 5 cases failed (no thresholds and no baseline: every case must pass)"]
    assert [c.case_id for c in report.failing] == ["c004"]


def test_pass_rate_threshold() -> None:
    current = verdicts([True] * 9 + [False], "r")
    assert evaluate_gate(current, GateThresholds(pass_rate=0.9)).passed
    report = evaluate_gate(current, GateThresholds(pass_rate=0.95))
    assert report.failures == ["pass rate 90% is below the threshold 95%"]
    assert report.pass_rate == pytest.approx(0.9)


def test_tag_pass_rate_threshold_and_unknown_tag() -> None:
    current = run(
        [
            case("a", True, tags=("billing",)),
            case("b", False, tags=("billing",)),
            case("c", True, tags=("tone",)),
        ]
    )
    report = evaluate_gate(current, GateThresholds(tag_pass_rate={"tone": 1.0, "billing": 0.75, "biling": 0.5}))
    assert report.tag_pass_rates == {"billing": 0.5, "tone": 1.0}
    assert report.failures == [
        "tag 'billing': pass rate 50% is below the threshold 75%",
        "tag 'biling': no case carries it (threshold 50%)",
    ]


def test_mean_score_threshold() -> None:
    current = run([case("a", True, score=0.9), case("b", True, score=0.6)])
    assert evaluate_gate(current, GateThresholds(mean_score=0.75)).passed
    report = evaluate_gate(current, GateThresholds(mean_score=0.8))
    assert report.failures == ["mean score 0.750 is below the threshold 0.800"]


def test_an_empty_run_fails() -> None:
    report = evaluate_gate(run([]), GateThresholds(pass_rate=0.0))
    assert not report.passed
    assert "the run has no cases" in report.failures


def test_repeats_fold_by_majority_and_mean_score() -> None:
    current = run(
        [
            case("half", True, repeat=0),
            case("half", False, repeat=1, reason="too short"),
            case("third", True, repeat=0),
            case("third", False, repeat=1, reason="no refund"),
            case("third", False, repeat=2, reason="no refund"),
        ]
    )
    folded = outcomes(current)
    assert folded["half"].passed and folded["half"].score == pytest.approx(0.5)
    assert not folded["third"].passed
    assert folded["third"].pass_fraction == pytest.approx(1 / 3)
    assert folded["third"].reasons == ("icontains: no refund",)  # deduplicated across repeats
    assert folded["third"].repeats == 3
    report = evaluate_gate(current, GateThresholds())
    assert (report.cases, report.passed_cases) == (2, 1)


def test_errors_are_failures_with_their_reason() -> None:
    folded = outcomes(run([case("x", False, error="upstream timed out")]))["x"]
    assert not folded.passed and folded.errored
    assert folded.reasons == ("error: upstream timed out",)


def test_any_regression_fails_by_default_and_is_explained() -> None:
    baseline = run([case("refund", True, description="asks for a refund", tags=("billing",)), case("hi", True)], "main")
    current = run(
        [
            case("refund", False, description="asks for a refund", tags=("billing",), reason="expected 'refund'"),
            case("hi", True),
        ]
    )
    report = evaluate_gate(current, GateThresholds(), baseline)
    assert not report.passed
    assert report.failures == ["1 regression(s) vs baseline 'main' (allowed: 0)"]
    (regression,) = report.regressions
    assert regression.case_id == "refund"
    assert regression.description == "asks for a refund"
    assert (regression.score_before, regression.score_after) == (1.0, 0.0)
    assert regression.reason == "icontains: expected 'refund'"
    text = "\n".join(report.lines())
    assert "gate: FAILED" in text
    assert "asks for a refund (refund) [billing]: score 1.00 → 0.00 — icontains: expected 'refund'" in text


def test_a_run_without_regressions_passes_against_its_baseline() -> None:
    baseline = verdicts([True] * 8 + [False] * 2, "main")
    current = verdicts([True] * 9 + [False], "pr")
    report = evaluate_gate(current, GateThresholds(), baseline)
    assert report.passed, report.failures
    assert [f.case_id for f in report.fixes] == ["c008"]
    assert report.fixes[0].reason == "icontains: expected 'refund'"  # why it failed before
    assert report.comparison is not None
    assert report.comparison.pass_rate_delta.estimate == pytest.approx(0.1)


def test_max_regressions_tolerates_flukes_but_not_a_significant_drop() -> None:
    baseline = verdicts([True] * 100, "main")
    two_down = verdicts([True] * 98 + [False] * 2, "pr")
    assert evaluate_gate(two_down, GateThresholds(max_regressions=2), baseline).passed
    assert not evaluate_gate(two_down, GateThresholds(max_regressions=1), baseline).passed
    # 10 regressions, 0 fixes: McNemar p = 2 / 2^10 ≈ 0.002 — a real drop, whatever is allowed.
    ten_down = verdicts([True] * 90 + [False] * 10, "pr")
    report = evaluate_gate(ten_down, GateThresholds(max_regressions=20), baseline)
    assert not report.passed
    assert report.failures == [
        "pass rate fell significantly vs baseline 'main' (McNemar p = 0.002 < 0.05), "
        "though within 20 allowed regressions"
    ]


def test_comparison_numbers_and_plain_words() -> None:
    # 100 paired cases: baseline 92 pass; now 84 pass: 10 regressions, 2 fixes.
    base = [True] * 92 + [False] * 8
    now = [False] * 10 + [True] * 82 + [True] * 2 + [False] * 6
    report = evaluate_gate(verdicts(now, "pr"), GateThresholds(), verdicts(base, "main"))
    cmp = report.comparison
    assert cmp is not None
    assert (cmp.paired, cmp.regressions, cmp.fixes) == (100, 10, 2)
    assert (cmp.baseline_pass_rate, cmp.pass_rate) == pytest.approx((0.92, 0.84))
    assert cmp.mcnemar_p == pytest.approx(2 * (1 + 12 + 66) / 4096)  # b=10, c=2, n=12
    assert cmp.pass_rate_delta.estimate == pytest.approx(-0.08)
    assert cmp.pass_rate_delta.low < -0.08 < cmp.pass_rate_delta.high < 0
    assert cmp.score_delta.estimate == pytest.approx(-0.08)
    assert cmp.significant
    text = "\n".join(report.lines())
    assert "pass rate fell from 92% to 84% (\u22128 pts, 95% CI \u2212" in text
    assert "McNemar p = 0.039) over 100 paired cases: 10 regression(s), 2 fix(es) — unlikely to be chance" in text
    assert "mean score fell from 0.92 to 0.84 (\u22120.08, 95% CI \u2212" in text


def test_cases_in_only_one_run_are_reported_not_paired() -> None:
    baseline = run([case("a", True), case("gone", False)], "main")
    current = run([case("a", True), case("new", False)])
    report = evaluate_gate(current, GateThresholds(), baseline)
    assert report.passed  # a new failing case is not a regression
    cmp = report.comparison
    assert cmp is not None
    assert (cmp.paired, cmp.only_in_run, cmp.only_in_baseline) == (1, ("new",), ("gone",))
    assert "not compared: 1 case(s) only in this run, 1 only in the baseline" in report.notes
    assert "1 new case(s) fail: new" in report.notes


def test_no_shared_case_fails_the_comparison() -> None:
    report = evaluate_gate(run([case("a", True)]), GateThresholds(), run([case("b", True)], "main"))
    assert not report.passed
    assert report.failures == ["no case of this run is in the baseline 'main': nothing to compare"]


def test_load_baseline_by_run_id_and_by_path(tmp_path: Path) -> None:
    saved = verdicts([True, False], "main-run")
    saved.save(tmp_path / "runs" / "main-run.json")
    assert load_baseline("main-run", tmp_path / "runs").cases == saved.cases
    elsewhere = tmp_path / "baseline.json"
    saved.save(elsewhere)
    assert load_baseline(str(elsewhere), tmp_path / "runs").id == "main-run"


def test_load_baseline_unknown_or_unreadable_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match=r"baseline 'nope': no run with that id in .* and no such file"):
        load_baseline("nope", tmp_path)
    bad = tmp_path / "bad.json"
    bad.write_text('{"format": 99}')
    with pytest.raises(UsageError, match="not a readable eval run"):
        load_baseline(str(bad), tmp_path)


@pytest.mark.parametrize(
    ("p", "text"), [(1.0, "1"), (0.25, "0.25"), (0.0390625, "0.039"), (0.003, "0.003"), (0.0004, "< 0.001")]
)
def test_p_value_formatting(p: float, text: str) -> None:
    assert p_value(p) == text


def test_percent_formatting() -> None:
    assert (percent(0.92), percent(0.925), percent(1.0), percent(0.0)) == ("92%", "92.5%", "100%", "0%")


def test_lines_without_verdict_is_a_plain_comparison() -> None:
    report = evaluate_gate(verdicts([False], "pr"), GateThresholds(), verdicts([True], "main"))
    lines = report.lines(verdict=False)
    assert not any(line.startswith("gate:") or "✗" in line for line in lines)
    assert lines[0] == "pass rate 0% (0 of 1 cases), mean score 0.00"
    assert any(line.startswith("pass rate fell from 100% to 0%") for line in lines)
