"""`modelplane` imports a command group only when it is used; help and typos behave as if it were eager."""

from __future__ import annotations

import subprocess
import sys

import pytest
from typer.testing import CliRunner

from modelplane.cli.main import COMMANDS, app

HEAVY = ("plotly", "modelplane.economics.report", "modelplane.cli.report", "modelplane.cli.router", "uvicorn")

PROBE = """
import sys
from typer.testing import CliRunner
from modelplane.cli.main import app
result = CliRunner().invoke(app, sys.argv[1:])
assert result.exit_code == 0, result.output
print(" ".join(name for name in {heavy!r} if name in sys.modules))
"""


def probe(*args: str) -> set[str]:
    """The HEAVY modules loaded by `modelplane ARGS` in a fresh interpreter (this one has them all)."""
    command = [sys.executable, "-c", PROBE.format(heavy=HEAVY), *args]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    return set(done.stdout.split())


def test_importing_the_cli_loads_no_command_module() -> None:
    code = "import sys, modelplane.cli.main; print(*[m for m in sys.modules if m.startswith('modelplane.cli.')])"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert set(done.stdout.split()) == {"modelplane.cli.main"}


@pytest.mark.parametrize("args", [["eval", "--help"], ["eval", "run", "--help"], ["cache", "purge", "--help"]])
def test_a_command_loads_only_its_own_module(args: list[str]) -> None:
    assert probe(*args) == set()


def test_the_probe_sees_what_a_command_loads() -> None:
    assert {"modelplane.cli.report", "plotly"} <= probe("report", "--help")


def test_top_level_help_lists_every_command_in_order() -> None:
    out = CliRunner().invoke(app, ["--help"], env={"COLUMNS": "200"}).output
    rows = [line.split()[1] for line in out.splitlines() if line.startswith("│ ") and line.split()[1] in COMMANDS]
    assert rows == list(COMMANDS)
    assert "Run eval suites, gate changes in CI" in out and "Run the gateway" in out


def test_every_command_resolves_and_a_typo_gets_a_suggestion() -> None:
    for name in COMMANDS:
        result = CliRunner().invoke(app, [name, "--help"])
        assert result.exit_code == 0, (name, result.output)
        assert f"modelplane {name}" in result.output
    result = CliRunner().invoke(app, ["evl"])
    assert result.exit_code == 2 and "Did you mean 'eval'?" in result.output
