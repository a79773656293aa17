"""Every option that names a file or folder to write (--out, --junit, --summary-md, --runs-dir)
creates its parent folders, and a path that cannot be written is `cannot write PATH: reason`, exit 2."""

from __future__ import annotations

import asyncio
from pathlib import Path

import orjson
import pytest
from typer.testing import CliRunner

import reportledger
from modelplane.cli.main import app
from upstream import ScriptedUpstream

SUITE = """
target: {feature: greet}
prompts: ["Say hello to {{name}}"]
tests: [{id: ada, vars: {name: Ada}, assert: [{type: icontains, value: hello}]}]
"""


@pytest.fixture
def workdir(tmp_path: Path, hello_upstream: ScriptedUpstream, monkeypatch: pytest.MonkeyPatch) -> Path:
    url = f"sqlite:///{tmp_path}/ledger.db"
    (tmp_path / "modelplane.yaml").write_text(
        reportledger.CONFIG_YAML.replace("http://127.0.0.1:1/v1", hello_upstream.base_url)
        + "  greet: {route: {models: [small]}}\n"
        + f'ledger: {{url: "{url}"}}\n'
    )
    asyncio.run(reportledger.seed(url, reportledger.hand_ledger()))
    (tmp_path / "suite.yaml").write_text(SUITE)
    (tmp_path / "a-file").write_text("not a folder")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MODELPLANE_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("CI", "true")
    return tmp_path


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args), env={"COLUMNS": "200"})
    assert "Traceback" not in result.output
    return result.exit_code, result.output


def cannot_write(path: Path, output: str) -> bool:
    return f"error: cannot write {str(path).rstrip('/')}: Not a directory" in output


def test_report_out(workdir: Path) -> None:
    target = workdir / "new" / "dir" / "report.json"
    code, out = run("report", "--format", "json", "--out", str(target))
    assert code == 0, out
    assert orjson.loads(target.read_bytes())["total"]["servings"] > 0
    code, out = run("report", "--format", "json", "--out", str(workdir / "a-file" / "report.json"))
    assert code == 2 and cannot_write(workdir / "a-file" / "report.json", out)


def test_eval_run_reports(workdir: Path) -> None:
    junit, summary, runs = workdir / "ci" / "junit.xml", workdir / "ci" / "md" / "summary.md", workdir / "r" / "runs"
    flags = ("--junit", str(junit), "--summary-md", str(summary), "--runs-dir", str(runs))
    code, out = run("eval", "run", "suite.yaml", *flags)
    assert code == 0, out
    assert "<testsuite" in junit.read_text() and summary.read_text().strip() and list(runs.glob("*.json"))


@pytest.mark.parametrize("flag", ["--junit", "--summary-md", "--runs-dir"])
def test_eval_run_refuses_a_path_it_cannot_write_before_running(workdir: Path, flag: str) -> None:
    code, out = run("eval", "run", "suite.yaml", "--no-cache", flag, str(workdir / "a-file" / "out"))
    assert code == 2 and cannot_write(workdir / "a-file" / ("out" if flag == "--runs-dir" else ""), out)
    assert "suite → feature:greet" not in out  # nothing was run
    assert not list((workdir / "home" / "evals").glob("runs/*.json"))


def test_eval_run_runs_dir_in_proc(workdir: Path) -> None:
    code, out = run("eval", "run", "suite.yaml", "--runs-dir", "/proc/x")
    assert code == 2 and "error: cannot write /proc/x: No such file or directory" in out


def test_eval_import_out(workdir: Path) -> None:
    source = workdir / "promptfooconfig.yaml"
    source.write_text("prompts: ['{{q}}']\ntests: [{vars: {q: hi}}]\n")
    code, out = run("eval", "import", str(source), "--out", str(workdir / "suites" / "new" / "s.yaml"))
    assert code == 0, out
    assert (workdir / "suites" / "new" / "s.yaml").read_text().startswith("# Imported from")
    code, out = run("eval", "import", str(source), "--out", str(workdir / "a-file" / "s.yaml"))
    assert code == 2 and cannot_write(workdir / "a-file" / "s.yaml", out)


def test_router_train_out_is_checked_before_training(workdir: Path) -> None:
    code, out = run("router", "train", "--out", str(workdir / "a-file" / "router.json"), "--data", "nope.csv")
    assert code == 2 and cannot_write(workdir / "a-file", out)  # not a complaint about nope.csv
