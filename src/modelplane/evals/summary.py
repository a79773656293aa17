"""An eval run as a Markdown summary for a pull-request comment.

It opens with the verdict, then says in plain words how the pass rate and the mean score
moved against the baseline and how sure that is, then lists the regressions (at most
`TABLE_LIMIT`, then "and N more"), and ends with what the run cost per case and how fast it
answered — so a reviewer can decide without opening the CI logs.
"""

from __future__ import annotations

import numpy as np

from modelplane.evals.gate import (
    CaseChange,
    CaseOutcome,
    GateReport,
    GateThresholds,
    evaluate_gate,
    pass_rate_sentence,
    percent,
    score_sentence,
)
from modelplane.evals.results import RunResult

TABLE_LIMIT = 20
REASON_LIMIT = 160


def markdown(run: RunResult, report: GateReport | None = None, baseline: RunResult | None = None) -> str:
    """The summary of `run`; `report` adds the verdict, `baseline` the comparison (also taken from `report`)."""
    shown = report
    if shown is None:  # no gate: compute the comparison only, and show no verdict
        shown = evaluate_gate(run, GateThresholds(), baseline)
    out = [_heading(run, report), ""]
    if report is not None and report.failures:
        out += [f"- {_cell(failure, 300)}" for failure in report.failures] + [""]
    out.append(
        f"**{shown.passed_cases} of {shown.cases} cases pass ({percent(shown.pass_rate)})**, "
        f"mean score {shown.mean_score:.2f}."
    )
    cmp = shown.comparison
    if cmp is not None:
        out += ["", f"- {_capital(pass_rate_sentence(cmp))}.", f"- {_capital(score_sentence(cmp))}."]
        if cmp.only_in_run or cmp.only_in_baseline:
            out.append(
                f"- Not compared: {len(cmp.only_in_run)} case(s) only in this run, "
                f"{len(cmp.only_in_baseline)} only in the baseline."
            )
    out.append("")
    if cmp is not None:
        out += _changes("Regressions", "why it fails now", shown.regressions)
        out += _changes("Fixes", "why it failed before", shown.fixes)
    elif shown.failing:
        out += _failing(shown.failing)
    out += _economics(run, baseline)
    out.append(_footer(run))
    return "\n".join(out) + "\n"


def _heading(run: RunResult, report: GateReport | None) -> str:
    name = f"`{run.suite}` → `{run.target}`"
    if report is None:
        return f"### Eval run {name}"
    if report.passed:
        return f"### ✅ Eval gate passed: {name}"
    return f"### ❌ Eval gate failed: {name}"


def _changes(title: str, why: str, changes: list[CaseChange]) -> list[str]:
    if not changes:
        return []
    out = [f"#### {title} ({len(changes)})", "", f"| case | tags | score | {why} |", "| --- | --- | --- | --- |"]
    for change in changes[:TABLE_LIMIT]:
        out.append(
            f"| {_case_cell(change.label, change.case_id)} | {_cell(', '.join(change.tags))} "
            f"| {change.score_before:.2f} → {change.score_after:.2f} | {_cell(change.reason, REASON_LIMIT)} |"
        )
    return [*out, *_more(len(changes)), ""]


def _failing(failing: list[CaseOutcome]) -> list[str]:
    out = [f"#### Failing cases ({len(failing)})", "", "| case | tags | score | why |", "| --- | --- | --- | --- |"]
    for case in failing[:TABLE_LIMIT]:
        out.append(
            f"| {_case_cell(case.description or case.case_id, case.case_id)} | {_cell(', '.join(case.tags))} "
            f"| {case.score:.2f} | {_cell('; '.join(case.reasons), REASON_LIMIT)} |"
        )
    return [*out, *_more(len(failing)), ""]


def _more(total: int) -> list[str]:
    return ["", f"… and {total - TABLE_LIMIT} more."] if total > TABLE_LIMIT else []


def _economics(run: RunResult, baseline: RunResult | None) -> list[str]:
    runs = [("this run", run)] + ([("baseline", baseline)] if baseline is not None else [])
    out = ["| | cost per case | latency p50 | latency p95 | cached |", "| --- | --- | --- | --- | --- |"]
    for label, r in runs:
        out.append(f"| {label} | {_cost_per_case(r)} | {_latency(r, 50)} | {_latency(r, 95)} | {_cached(r)} |")
    return [*out, ""]


def _cost_per_case(run: RunResult) -> str:
    costs = [c.cost_usd for c in run.cases]
    if not costs:
        return "-"
    if any(c is None for c in costs):
        return "unknown"
    return f"${sum(c or 0.0 for c in costs) / len(costs):.6f}"


def _latency(run: RunResult, q: int) -> str:
    answered = [c.latency_ms for c in run.cases if not c.cached] or [c.latency_ms for c in run.cases]
    if not answered:
        return "-"
    ms = float(np.percentile(answered, q))
    return f"{ms:.0f} ms" if ms < 1000 else f"{ms / 1000:.2f} s"


def _cached(run: RunResult) -> str:
    return f"{sum(c.cached for c in run.cases)} of {len(run.cases)}"


def _footer(run: RunResult) -> str:
    seconds = max(0.0, run.finished_at - run.started_at)
    version = f" · config `{run.config_version}`" if run.config_version else ""
    return (
        f"<sub>run `{run.id}`{version} · {len(run.cases)} case run(s), {run.repeats} repeat(s) · {seconds:.1f} s</sub>"
    )


def _case_cell(label: str, case_id: str) -> str:
    return _cell(label, 80) if label == case_id else f"{_cell(label, 80)} (`{_cell(case_id, 40)}`)"


def _cell(text: str, limit: int = 0) -> str:
    """Text safe inside a Markdown table cell: one line, pipes escaped, cut at `limit` characters."""
    one_line = " ".join(text.split())
    if limit and len(one_line) > limit:
        one_line = one_line[: limit - 1] + "…"
    return one_line.replace("|", "\\|")


def _capital(text: str) -> str:
    return text[:1].upper() + text[1:]
