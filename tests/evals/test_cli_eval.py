"""`modelplane eval …` end to end: a real OpenAI-compatible stub upstream on loopback, the CLI in-process.

Exit codes: 0 passed, 1 gate failed, 2 usage error (before anything runs)."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
from typer.testing import CliRunner

from modelplane.cli.main import app
from modelplane.evals.results import RunResult
from upstream import ScriptedUpstream

PASSING = """
description: greetings
target: {feature: greet, params: {temperature: 0}}
prompts: ["Say hello to {{name}}"]
tests:
  - {id: ada, vars: {name: Ada}, tags: [people], assert: [{type: icontains, value: hello}]}
  - {id: bob, vars: {name: Bob}, tags: [people], assert: [{type: not-contains, value: "As an AI"}]}
"""
FAILING = PASSING.replace("value: hello}", "value: goodbye}")


@pytest.fixture
def workdir(tmp_path: Path, hello_upstream: ScriptedUpstream, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "modelplane.yaml").write_text(
        f"""
providers:
  stub: {{kind: openai, base_url: "{hello_upstream.base_url}"}}
models:
  small: {{provider: stub, name: small-1, price: {{input: 1, output: 1}}}}
features:
  greet: {{route: {{strategy: single, models: [small]}}}}
"""
    )
    (tmp_path / "passing.yaml").write_text(PASSING)
    (tmp_path / "failing.yaml").write_text(FAILING)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MODELPLANE_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("CI", "true")
    return tmp_path


def cli(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.output


def test_a_passing_run_exits_0_and_is_stored(workdir: Path) -> None:
    code, out = cli("eval", "run", "passing.yaml", "--run-id", "main-run", "--gate")
    assert code == 0, out
    assert "2/2 passed" in out and "gate: PASSED" in out
    saved = RunResult.load(workdir / "home" / "evals" / "runs" / "main-run.json")
    assert saved.target == "feature:greet" and [c.passed for c in saved.cases] == [True, True]
    assert saved.cases[0].output == "Hello there!" and saved.config_version


def test_a_failing_gate_exits_1_and_names_the_regression(workdir: Path, hello_upstream: ScriptedUpstream) -> None:
    assert cli("eval", "run", "passing.yaml", "--run-id", "base")[0] == 0
    junit, summary = workdir / "out.xml", workdir / "summary.md"
    code, out = cli(
        "eval", "run", "failing.yaml", "--baseline", "base", "--gate", "--junit", str(junit),
        "--summary-md", str(summary),
    )  # fmt: skip
    assert code == 1, out
    assert "gate: FAILED" in out and "ada" in out and "regressions (1)" in out
    assert "<testsuite" in junit.read_text() and summary.read_text().strip()


def test_without_gate_a_failing_run_exits_0(workdir: Path) -> None:
    code, out = cli("eval", "run", "failing.yaml", "--no-cache")
    assert code == 0 and "1/2 passed" in out and "does not contain 'goodbye'" in out


def test_thresholds_from_flags(workdir: Path) -> None:
    assert cli("eval", "run", "failing.yaml", "--gate", "--pass-rate", "0.5")[0] == 0
    code, out = cli("eval", "run", "failing.yaml", "--gate", "--tag-pass-rate", "people=0.9")
    assert code == 1 and "people" in out


def test_the_cache_makes_a_rerun_free(workdir: Path, hello_upstream: ScriptedUpstream) -> None:
    cli("eval", "run", "passing.yaml")
    before = hello_upstream.count()
    code, out = cli("eval", "run", "passing.yaml")
    assert code == 0 and hello_upstream.count() == before and "2 cached" in out
    cli("eval", "run", "passing.yaml", "--no-cache")
    assert hello_upstream.count() == before + 2


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["eval", "run", "missing.yaml"], "cannot read suite missing.yaml"),
        (["eval", "run", "bad.yaml"], "tests[0].assert[0].type: unknown assertion 'containz'"),
        (["eval", "run", "passing.yaml", "--baseline", "no-such-run"], "baseline 'no-such-run'"),
        (["eval", "run", "passing.yaml", "--tag-pass-rate", "people"], "expected TAG=X"),
        (["eval", "run", "passing.yaml", "--run-id", "../x"], "invalid run id"),
        (["eval", "run", "other-target.yaml"], "the config has no feature 'nope'"),
        (["eval", "show", "nope"], "no eval run 'nope'"),
        (["eval", "list", "--runs-dir", "no-such-dir"], "no runs folder at no-such-dir"),
    ],
)
def test_usage_errors_exit_2_with_one_line(workdir: Path, args: list[str], message: str) -> None:
    (workdir / "bad.yaml").write_text(PASSING.replace("type: icontains", "type: containz"))
    (workdir / "other-target.yaml").write_text(PASSING.replace("feature: greet", "feature: nope"))
    code, out = cli(*args)
    assert code == 2, out
    assert message in out and "Traceback" not in out


def test_list_show_and_compare(workdir: Path) -> None:
    cli("eval", "run", "passing.yaml", "--run-id", "a")
    cli("eval", "run", "failing.yaml", "--run-id", "b")
    code, out = cli("eval", "list", "--json")
    assert code == 0
    listed = [orjson.loads(line) for line in out.splitlines()]
    assert {(r["id"], r["passed"], r["cases"]) for r in listed} == {("a", 2, 2), ("b", 1, 2)}
    code, out = cli("eval", "show", "b")
    assert code == 0 and "ada" in out and "1/2 passed" in out
    code, out = cli("eval", "show", str(workdir / "home" / "evals" / "runs" / "a.json"), "--json")
    assert code == 0 and orjson.loads(out)["id"] == "a"
    code, out = cli("eval", "compare", "a", "b")
    assert code == 0 and "regressions (1)" in out and "McNemar" in out


def test_the_target_can_be_overridden(workdir: Path) -> None:
    code, out = cli("eval", "run", "passing.yaml", "--model", "small", "--json")
    assert code == 0 and orjson.loads(out)["target"] == "model:small"
    code, out = cli("eval", "run", "passing.yaml", "--feature", "greet", "--model", "small")
    assert code == 2 and "both name a target" in out


def test_json_output(workdir: Path) -> None:
    code, out = cli("eval", "run", "passing.yaml", "--json")
    assert code == 0 and orjson.loads(out)["suite"] == "passing"
