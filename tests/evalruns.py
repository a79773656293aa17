"""Builders of eval `RunResult`s for the gate, JUnit and Markdown tests: runs written by hand, no runner."""

from __future__ import annotations

from modelplane.evals.results import AssertionResult, CaseResult, RunResult


def case(
    case_id: str,
    passed: bool,
    *,
    score: float | None = None,
    repeat: int = 0,
    tags: tuple[str, ...] = (),
    description: str = "",
    reason: str = "expected 'refund'",
    error: str | None = None,
    output: str = "an answer",
    cost_usd: float | None = 0.001,
    latency_ms: float = 120.0,
    cached: bool = False,
) -> CaseResult:
    """One case result; a failing one carries one failing `icontains` assertion with `reason`."""
    assertion = AssertionResult(
        type="icontains", passed=passed, score=1.0 if passed else 0.0, reason="" if passed else reason
    )
    return CaseResult(
        case_id=case_id,
        repeat=repeat,
        passed=passed,
        score=(1.0 if passed else 0.0) if score is None else score,
        output=output,
        description=description,
        tags=list(tags),
        assertions=[] if error else [assertion],
        error=error,
        cost_usd=cost_usd,
        latency_ms=latency_ms,
        cached=cached,
        input_tokens=40,
        output_tokens=12,
    )


def run(cases: list[CaseResult], run_id: str = "run-now", suite: str = "support") -> RunResult:
    return RunResult(
        id=run_id,
        suite=suite,
        target="feature:support-reply",
        started_at=1_700_000_000.0,
        finished_at=1_700_000_012.5,
        config_version="cfg-abc123",
        repeats=max((c.repeat for c in cases), default=0) + 1,
        cases=cases,
    )


def verdicts(passes: list[bool], run_id: str) -> RunResult:
    """A run whose case i (`c000`, `c001`, …) passes when passes[i]."""
    return run([case(f"c{i:03d}", ok) for i, ok in enumerate(passes)], run_id=run_id)
