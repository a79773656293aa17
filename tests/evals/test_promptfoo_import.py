"""`modelplane eval import`: a promptfoo config becomes a suite that loads; what cannot be mapped is said."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from modelplane.cli.main import app
from modelplane.errors import UsageError
from modelplane.evals.promptfoo import import_config, parse_mapping
from modelplane.evals.suite import load_suite

FIXTURE = Path(__file__).parent / "fixtures" / "promptfoo"


@pytest.fixture
def source(tmp_path: Path) -> Path:
    shutil.copytree(FIXTURE, tmp_path / "pf")
    return tmp_path / "pf" / "promptfooconfig.yaml"


def test_the_import_maps_prompts_providers_tests_and_assertions(source: Path, tmp_path: Path) -> None:
    out = tmp_path / "suites"
    out.mkdir()
    mapping = {"openai:gpt-4o-mini": "small", "openai:gpt-4o": "large"}
    imported = import_config(source, mapping, out_dir=out)
    suite = yaml.safe_load(imported.yaml)
    assert suite["description"] == "Customer support replies"
    assert suite["target"] == {"model": "small", "params": {"temperature": 0, "max_tokens": 200}}
    assert suite["judge"] == {"model": "large"}
    assert suite["prompts"][0] == "You are a support agent. Reply to: {{message}}"
    assert suite["prompts"][1][0] == {"role": "system", "content": "You are terse."}
    assert suite["defaultTest"] == {"assert": [{"type": "not-icontains", "value": "as an ai"}]}
    refund, shipping = suite["tests"]
    assert [a["type"] for a in refund["assert"]] == ["icontains", "llm-rubric", "cost", "latency", "python"]
    assert refund["assert"][0]["weight"] == 2 and refund["assert"][1]["threshold"] == 0.7
    assert refund["assert"][2] == {"type": "cost", "value": 0.002}  # promptfoo's threshold is the ceiling
    assert shipping["vars"]["message"] == "When will my order ship?\n"  # file:// vars are read
    assert [a["type"] for a in shipping["assert"]] == ["similar", "llm-rubric", "is-json", "regex"]
    assert imported.tests == 2

    notes = "\n".join(imported.notes)
    for expected in (
        "kept provider 'openai:gpt-4o-mini', not anthropic:messages:claude-3-5-haiku-20241022",
        "prompt file://prompts/missing.txt: cannot read it",
        "tests[0].assert[4]: assertion type 'javascript' is not supported",
        "tests[1].assert[2]: assertion type 'levenshtein' is not supported",
        "model-graded-closedqa imported as llm-rubric",
        "tests from files",
        "['response_format'] not carried over",
    ):
        assert expected in notes, notes

    # The result is a valid suite (the python check still resolves from its new folder).
    (out / "suite.yaml").write_text(imported.yaml)
    loaded = load_suite(out / "suite.yaml")
    assert len(loaded.cases) == 4  # two tests by two prompts
    assert loaded.target.model == "small"


def test_unmapped_providers_are_named_with_the_flag_to_fix_them(source: Path) -> None:
    notes = "\n".join(import_config(source, {}).notes)
    assert "provider 'openai:gpt-4o-mini' is not mapped: pass --map openai:gpt-4o-mini=MODEL" in notes
    assert "grading provider 'openai:gpt-4o' is not mapped" in notes


def test_the_cli_writes_the_suite_and_prints_what_was_not_mapped(source: Path, tmp_path: Path) -> None:
    out = tmp_path / "suite.yaml"
    result = CliRunner().invoke(
        app, ["eval", "import", str(source), "--out", str(out), "--map", "openai:gpt-4o-mini=small"]
    )
    assert result.exit_code == 0, result.output
    assert "not mapped: " in result.output and "javascript" in result.output
    assert yaml.safe_load(out.read_text())["target"]["model"] == "small"


def test_bad_mapping_and_missing_file_are_usage_errors(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="expected PROVIDER=MODEL"):
        parse_mapping(["small"])
    result = CliRunner().invoke(app, ["eval", "import", str(tmp_path / "nope.yaml")])
    assert result.exit_code == 2 and "cannot read" in result.output
