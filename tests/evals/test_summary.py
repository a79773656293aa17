"""The Markdown summary for a pull request: verdict, plain-words comparison, a capped regression table."""

from __future__ import annotations

from evalruns import case, run, verdicts
from modelplane.evals.gate import GateThresholds, evaluate_gate
from modelplane.evals.summary import TABLE_LIMIT, markdown


def test_failed_gate_summary_explains_the_drop_and_lists_regressions() -> None:
    base = [True] * 92 + [False] * 8
    now = [False] * 10 + [True] * 82 + [True] * 2 + [False] * 6
    baseline, current = verdicts(base, "main"), verdicts(now, "pr")
    current.cases[0].description = "refund | with a pipe"
    report = evaluate_gate(current, GateThresholds(), baseline)
    text = markdown(current, report, baseline)
    lines = text.splitlines()
    assert lines[0] == "### ❌ Eval gate failed: `support` → `feature:support-reply`"
    assert "- 10 regression(s) vs baseline 'main' (allowed: 0)" in lines
    assert "**84 of 100 cases pass (84%)**, mean score 0.84." in lines
    assert "- Pass rate fell from 92% to 84% (\u22128 pts, 95% CI \u2212" in text
    assert "McNemar p = 0.039)" in text
    assert "#### Regressions (10)" in lines
    assert "| refund \\| with a pipe (`c000`) |  | 1.00 → 0.00 | icontains: expected 'refund' |" in lines
    assert "#### Fixes (2)" in lines
    assert "| this run | $0.001000 | 120 ms | 120 ms | 0 of 100 |" in lines
    assert "| baseline | $0.001000 | 120 ms | 120 ms | 0 of 100 |" in lines
    assert lines[-1].startswith("<sub>run `pr` · config `cfg-abc123`")


def test_regression_table_is_capped() -> None:
    n = TABLE_LIMIT + 7
    baseline, current = verdicts([True] * n, "main"), verdicts([False] * n, "pr")
    text = markdown(current, evaluate_gate(current, GateThresholds(), baseline), baseline)
    rows = [line for line in text.splitlines() if line.startswith("| c0")]
    assert len(rows) == TABLE_LIMIT
    assert "… and 7 more." in text


def test_passed_gate_without_baseline_has_no_comparison() -> None:
    current = run([case("a", True), case("b", True, cost_usd=None, cached=True, latency_ms=0)])
    text = markdown(current, evaluate_gate(current, GateThresholds()))
    assert text.startswith("### ✅ Eval gate passed:")
    assert "Pass rate" not in text and "Regressions" not in text
    assert "| this run | unknown | 120 ms | 120 ms | 1 of 2 |" in text  # latency over answered cases only


def test_without_a_gate_there_is_no_verdict_but_failing_cases_are_listed() -> None:
    current = run([case("a", True), case("b", False, reason="too rude", latency_ms=1500)])
    text = markdown(current)
    assert text.startswith("### Eval run `support`")
    assert "gate" not in text.lower()
    assert "| b |  | 0.00 | icontains: too rude |" in text
    assert "| this run | $0.001000 | 810 ms | 1.43 s | 0 of 2 |" in text  # interpolated p50 / p95
