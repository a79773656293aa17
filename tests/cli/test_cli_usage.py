"""Every command: help that reads well, and a wrong input ends with exit 2 and a one-line reason."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import pytest
import typer
import yaml
from typer.testing import CliRunner

import reportledger
from modelplane.cli.main import COMMANDS, app


def commands() -> list[list[str]]:
    root = typer.main.get_command(app)
    found = []
    for name in COMMANDS:
        group = getattr(root.commands[name], "commands", None)
        found += [[name, sub] for sub in group] if group else [[name]]
    return found


def run(*args: str, columns: int = 200) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args), env={"COLUMNS": str(columns)})
    return result.exit_code, result.output


@pytest.mark.parametrize("command", commands(), ids=" ".join)
def test_help_and_a_bad_flag(command: list[str]) -> None:
    code, out = run(*command, "--help", columns=80)
    assert code == 0, out
    assert "list[" not in out  # Python types: a repeatable option names what it takes
    assert not re.search(r"\S…\s*│", out)  # a long word (a default path) cut off at 80 columns
    rows = re.findall(r"^│\s+(?:\*\s+)?(--[a-z-]+)(?:\s+-\w)?\s+(\S+)\s+(.*?)\s*│$", out, re.M)
    assert "--help" in [name for name, _, _ in rows]
    assert all(text and not text.startswith("[") for _, _, text in rows), rows  # help, not just a default
    code, out = run(*command, "--no-such-flag")
    assert code == 2
    assert "No such option: --no-such-flag" in out and "Traceback" not in out


def test_router_train_checks_the_feature(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODELPLANE_HOME", str(tmp_path / "home"))
    url = f"sqlite:///{tmp_path}/ledger.db"
    config = tmp_path / "modelplane.yaml"
    config.write_text(reportledger.CONFIG_YAML + f'ledger: {{url: "{url}"}}\n')
    asyncio.run(reportledger.seed(url, reportledger.hand_ledger()))
    out_file = str(tmp_path / "router.json")
    base = ["router", "train", "--out", out_file, "--from-ledger", "--config", str(config)]
    code, out = run(*base, "--feature", "nosuch")
    assert code == 2
    assert "unknown feature 'nosuch'" in out and "known features: summarize, support-reply" in out
    code, out = run(*base, "--feature", "summarize")
    assert code == 2 and "the ledger holds no judged servings" in out  # a known name gets to the ledger
    code, out = run("router", "train", "--out", out_file, "--data", "x.csv", "--feature", "summarize")
    assert code == 2 and "--feature picks the ledger's servings" in out and "--from-ledger" in out


def test_eval_import_says_a_judge_is_needed(tmp_path: Path) -> None:
    source = tmp_path / "promptfooconfig.yaml"
    source.write_text(
        "prompts: ['{{q}}']\n"
        "tests: [{vars: {q: hi}, assert: [{type: llm-rubric, value: polite}]},"
        " {vars: {q: ho}, assert: [{type: model-graded-closedqa, value: ok}]}]\n"
    )
    out_file = tmp_path / "suite.yaml"
    code, out = run("eval", "import", str(source), "--out", str(out_file))
    assert code == 0, out
    assert "not mapped: llm-rubric assertions need a judge" in out and "add `judge: {model: NAME}` to the suite" in out
    assert "judge" not in yaml.safe_load(out_file.read_text())
    # promptfoo's grader, mapped to a configured model, is the suite's judge: nothing to add.
    source.write_text(source.read_text() + "defaultTest: {options: {provider: openai:gpt-4o}}\n")
    code, out = run("eval", "import", str(source), "--out", str(out_file), "--map", "openai:gpt-4o=large")
    assert code == 0, out
    assert "need a judge" not in out
    assert yaml.safe_load(out_file.read_text())["judge"] == {"model": "large"}
