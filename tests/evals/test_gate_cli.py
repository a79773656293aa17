"""`modelplane eval run --gate --baseline`: exit 0 when nothing regressed, 1 when a case did, 2 on bad input.

A real gateway in-process in front of a scripted OpenAI-compatible upstream on loopback: the
baseline is a run where the upstream's answer passes every case; the change under test makes
the upstream answer differently.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from modelplane.cli.main import app
from upstream import ScriptedUpstream, ok

GOOD = "Your refund is on its way; sorry for the trouble."
BAD = "Please contact support."
ONE_REGRESSION = "Your refund is on its way."  # no apology: the `apology` case fails

SUITE = """\
description: refunds
target: {model: small}
prompts: ["Reply to: {{message}}"]
tests:
  - {id: refund, description: asks for a refund, vars: {message: "I want a refund"}, tags: [billing],
     assert: [{type: icontains, value: refund}]}
  - {id: apology, vars: {message: "This is broken"}, tags: [care], assert: [{type: icontains, value: sorry}]}
  - {id: polite, vars: {message: "Hi"}, assert: [{type: not-contains, value: "As an AI"}]}
"""


@pytest.fixture
def up() -> Iterator[ScriptedUpstream]:
    with ScriptedUpstream.in_thread() as upstream:
        upstream.default = ok(GOOD)
        yield upstream


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, up: ScriptedUpstream) -> Path:
    monkeypatch.setenv("MODELPLANE_HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    (tmp_path / "modelplane.yaml").write_text(
        f'providers: {{up: {{kind: openai, base_url: "{up.base_url}"}}}}\n'
        "models: {small: {provider: up, price: {input: 1, output: 2}}}\n"
        "features: {reply: {route: {models: [small]}}}\n"
        f'ledger: {{url: "sqlite:///{tmp_path}/ledger.db"}}\n'
    )
    write_suite(tmp_path, "")
    return tmp_path


def write_suite(workdir: Path, gate: str) -> None:
    (workdir / "suite.yaml").write_text(SUITE + (f"gate: {gate}\n" if gate else ""))


def evals(*args: str, command: str = "run") -> tuple[int, str, str]:
    head = (
        ["eval", "run", "suite.yaml", "--config", "modelplane.yaml", "--no-cache"]
        if command == "run"
        else ["eval", command]
    )
    result = CliRunner().invoke(app, [*head, "--runs-dir", "runs", *args], env={"COLUMNS": "200", "CI": "true"})
    return result.exit_code, result.stdout, result.stderr


def printed(*args: str, command: str = "run") -> tuple[int, str]:
    """The exit code and everything printed (stdout and stderr together)."""
    code, out, err = evals(*args, command=command)
    return code, out + err


def test_a_change_that_regresses_is_blocked_and_explained(workdir: Path, up: ScriptedUpstream) -> None:
    code, out, err = evals("--run-id", "main")
    assert code == 0, out + err
    up.default = ok(BAD)  # the change: no refund, no apology
    code, out, err = evals(
        "--run-id", "pr", "--baseline", "main", "--gate", "--junit", "out.xml", "--summary-md", "out.md"
    )
    assert code == 1, out + err
    assert "gate: FAILED" in out
    assert "2 regression(s) vs baseline 'main' (allowed: 0)" in out
    assert "asks for a refund (refund) [billing]: score 1.00 → 0.00" in out
    assert "pass rate fell from 100% to 33.3% (\u221266.7 pts" in out
    gate = next(c for c in ET.parse(workdir / "out.xml").iter("testcase") if c.get("name") == "gate")
    assert gate.find("failure") is not None
    assert (workdir / "out.md").read_text().startswith("### ❌ Eval gate failed")


def test_a_change_that_does_not_regress_passes(workdir: Path, up: ScriptedUpstream) -> None:
    assert evals("--run-id", "main")[0] == 0
    code, out, err = evals("--run-id", "pr", "--baseline", str(workdir / "runs" / "main.json"), "--gate")
    assert code == 0, out + err
    assert "gate: PASSED" in out
    assert "pass rate unchanged at 100%" in out


def test_gate_without_baseline_or_thresholds_needs_every_case_to_pass(workdir: Path, up: ScriptedUpstream) -> None:
    up.default = ok(BAD)
    code, out, err = evals("--gate")
    assert code == 1, out + err
    assert "2 of 3 cases failed" in out
    assert evals("--gate", "--pass-rate", "0.3")[0] == 0


def test_an_unknown_baseline_is_a_usage_error_before_anything_runs(workdir: Path, up: ScriptedUpstream) -> None:
    code, _out, err = evals("--baseline", "nope", "--gate")
    assert code == 2
    assert "baseline 'nope': no run with that id" in err
    assert up.count() == 0


# What is printed without a gate, and threshold flags merged over the suite's `gate:`.


@pytest.fixture
def baseline(workdir: Path, up: ScriptedUpstream) -> str:
    code, out = printed("--run-id", "main")
    assert code == 0, out
    up.default = ok(ONE_REGRESSION)
    return "main"


def test_a_baseline_without_gate_explains_the_change_but_gives_no_verdict(baseline: str) -> None:
    code, out = printed("--baseline", baseline)
    assert code == 0, out
    assert "regressions (1):" in out and "apology" in out and "McNemar" in out
    assert "gate:" not in out and "✗" not in out
    code, out = printed("--baseline", baseline, "--gate")
    assert code == 1 and "gate: FAILED" in out and "✗ 1 regression(s)" in out


def test_compare_prints_no_verdict_and_no_failure_lines(baseline: str) -> None:
    assert printed("--run-id", "pr")[0] == 0
    code, out = printed(baseline, "pr", command="compare")
    assert code == 0, out
    assert "pr (suite) against main" in out and "regressions (1):" in out
    assert "gate:" not in out and "✗" not in out and "allowed" not in out


def test_max_regressions_flag(baseline: str) -> None:
    assert printed("--baseline", baseline, "--gate", "--max-regressions", "1")[0] == 0
    code, out = printed("--baseline", baseline, "--gate", "--max-regressions", "0")
    assert code == 1 and "(allowed: 0)" in out


def test_a_flag_keeps_the_suite_gate_fields_it_does_not_set(workdir: Path, baseline: str) -> None:
    write_suite(workdir, "{max_regressions: 1, alpha: 0.2, tag_pass_rate: {care: 0.5}}")
    # --pass-rate alone used to drop the suite's section: max_regressions fell back to 0
    code, out = printed("--baseline", baseline, "--gate", "--pass-rate", "0.5", "--tag-pass-rate", "billing=1")
    assert code == 1, out
    assert "\u03b1 = 0.2" in out  # the suite's alpha, still there
    assert "tag 'care': pass rate 0% is below the threshold 50%" in out  # the suite's tag, kept beside billing
    assert "regression(s) vs baseline" not in out  # the suite's max_regressions: 1 tolerates it
    code, out = printed("--baseline", baseline, "--gate", "--tag-pass-rate", "care=0", "--alpha", "0.1")
    assert code == 0, out  # the flag wins for `care`, and for alpha
    assert "\u03b1 = 0.1" in out
    code, out = printed("--baseline", baseline, "--gate", "--max-regressions", "0")
    assert code == 1 and "1 regression(s) vs baseline 'main' (allowed: 0)" in out


@pytest.mark.parametrize("alpha", ["0", "1", "1.5"])
def test_alpha_outside_0_1_is_a_usage_error(workdir: Path, up: ScriptedUpstream, alpha: str) -> None:
    code, out = printed("--gate", "--alpha", alpha)
    assert code == 2 and "--alpha" in out
    assert up.count() == 0
