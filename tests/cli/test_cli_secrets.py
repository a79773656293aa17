"""Commands that only read the ledger or the cache run without provider secrets; those that call
providers (`serve`, `eval run`) and `config check` still say a secret is missing."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import orjson
import pytest
from typer.testing import CliRunner

import escalations
import reportledger
from modelplane.cli.main import app

MISSING = "providers.up.api_key: environment variable UP_API_KEY is not set"


@pytest.fixture
def config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The report's hand-made ledger (and two escalations) behind a provider whose key is unset."""
    monkeypatch.setenv("MODELPLANE_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("UP_API_KEY", raising=False)
    monkeypatch.chdir(tmp_path)
    url = f"sqlite:///{tmp_path}/ledger.db"
    text = reportledger.CONFIG_YAML.replace("api_key: k", 'api_key: "${UP_API_KEY}"')
    assert "${UP_API_KEY}" in text
    path = tmp_path / "modelplane.yaml"
    path.write_text(text + f'ledger: {{url: "{url}"}}\ncache: {{backend: sqlite}}\n')
    asyncio.run(reportledger.seed(url, reportledger.hand_ledger()))
    asyncio.run(escalations.seed(url, [escalations.escalation(1)]))
    return path


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, list(args), env={"COLUMNS": "200"})
    return result.exit_code, result.stdout, result.stderr


def test_read_only_commands_need_no_provider_secret(config: Path) -> None:
    code, out, err = run("report", "--config", str(config), "--format", "json")
    assert code == 0, err
    assert orjson.loads(out)["total"]["servings"] > 0
    code, out, err = run("escalations", "list", "--config", str(config), "--json")
    assert code == 0, err
    assert [row["id"] for row in orjson.loads(out)] == ["esc-1"]
    for args in (["cache", "stats"], ["cache", "purge"], ["keys", "new", "--tenant", "t", "--tier", "pro"]):
        code, out, err = run(*args, "--config", str(config))
        assert code == 0, (args, err)
        assert "UP_API_KEY" not in err


def test_config_check_and_eval_run_still_need_it(config: Path, tmp_path: Path) -> None:
    code, _, err = run("config", "check", "--config", str(config))
    assert code == 2 and MISSING in err
    suite = tmp_path / "suite.yaml"
    suite.write_text("target: {model: small}\nprompts: [hi]\ntests: [{assert: [{type: contains, value: x}]}]\n")
    code, _, err = run("eval", "run", str(suite), "--config", str(config))
    assert code == 2 and MISSING in err


def test_serve_still_needs_it(config: Path, tmp_path: Path) -> None:
    command = [str(Path(sys.executable).with_name("modelplane")), "serve", "--config", str(config), "--port", "0"]
    env = {"MODELPLANE_HOME": str(tmp_path / "home"), "PATH": "/usr/bin:/bin"}
    done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 2 and MISSING in done.stderr
    assert "Traceback" not in done.stderr
