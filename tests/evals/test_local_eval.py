"""The shipped example suites against the real bundled local model (the embedded default), via the CLI."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

pytestmark = pytest.mark.localmodel

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "evals"


def modelplane(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    # cwd is an empty folder, so no ./modelplane.yaml is found and the embedded default is used.
    command = [str(Path(sys.executable).with_name("modelplane")), "eval", *args]
    env = {**os.environ, "MODELPLANE_HOME": str(tmp_path / "home"), "CI": "true"}
    return subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600, check=False)


def test_the_basic_example_suite_passes_its_gate(tmp_path: Path) -> None:
    done = modelplane(tmp_path, "run", str(EXAMPLES / "local-basics.yaml"), "--gate", "--run-id", "local")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "gate: PASSED" in done.stdout
    run = orjson.loads((tmp_path / "home" / "evals" / "runs" / "local.json").read_bytes())
    assert run["target"] == "feature:chat" and all(case["passed"] for case in run["cases"])
    assert all(case["model"] == "local-small" and case["output_tokens"] > 0 for case in run["cases"])


def test_the_failing_example_suite_fails_its_gate(tmp_path: Path) -> None:
    done = modelplane(tmp_path, "run", str(EXAMPLES / "failing.yaml"), "--gate")
    assert done.returncode == 1, done.stdout + done.stderr
    assert "gate: FAILED" in done.stdout and "XYZZY" in done.stdout


def test_a_rubric_judged_by_the_local_model_gives_a_structured_result(tmp_path: Path) -> None:
    done = modelplane(tmp_path, "run", str(EXAMPLES / "local-judged.yaml"), "--json")
    assert done.returncode == 0, done.stderr
    (case,) = orjson.loads(done.stdout)["cases"]
    rubric = next(a for a in case["assertions"] if a["type"] == "llm-rubric")
    # Whatever the 270M judge thinks, the result is structured: a score in [0, 1] and a reason.
    assert 0.0 <= rubric["score"] <= 1.0
    assert isinstance(rubric["passed"], bool) and rubric["reason"].strip()
    assert case["passed"]  # the rubric has weight 0: reported, not counted
