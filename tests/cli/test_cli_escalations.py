"""`modelplane escalations list|resolve` against a SQLite ledger named by the config."""

from __future__ import annotations

import asyncio
from pathlib import Path

import orjson
import pytest
from typer.testing import CliRunner

from escalations import escalation, seed
from modelplane.cli.main import app


@pytest.fixture
def config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("MODELPLANE_HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "modelplane.yaml"
    path.write_text(
        f"""
providers: {{up: {{kind: openai, base_url: "http://127.0.0.1:1/v1", api_key: k}}}}
models: {{small: {{provider: up}}}}
features: {{tickets: {{route: {{models: [small]}}}}}}
ledger: {{url: "sqlite:///{tmp_path}/ledger.db"}}
"""
    )
    asyncio.run(seed(f"sqlite:///{tmp_path}/ledger.db", [escalation(n, tenant=f"tenant-{n}") for n in (1, 2)]))
    return path


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, list(args), env={"COLUMNS": "200"})
    return result.exit_code, result.stdout, result.stderr


def test_list_shows_open_escalations_newest_first(config: Path) -> None:
    code, out, _ = run("escalations", "list", "--config", str(config))
    assert code == 0
    assert out.index("esc-2") < out.index("esc-1")
    assert "tenant-1" in out and "tickets" in out and "['low', 'high']" in out

    code, out, _ = run("escalations", "list", "--config", str(config), "--json")
    assert code == 0
    rows = orjson.loads(out)
    assert [row["id"] for row in rows] == ["esc-2", "esc-1"]
    assert rows[0]["request"]["model"] == "tickets" and rows[0]["status"] == "open"


def test_resolve_moves_an_escalation_out_of_the_open_list(config: Path) -> None:
    code, out, _ = run("escalations", "resolve", "esc-1", "--note", "called the customer", "--config", str(config))
    assert code == 0 and "resolved esc-1" in out

    code, out, err = run("escalations", "list", "--json", "--config", str(config))
    assert code == 0, err
    assert [row["id"] for row in orjson.loads(out)] == ["esc-2"]
    code, out, _ = run("escalations", "list", "--json", "--status", "resolved", "--config", str(config))
    [resolved] = orjson.loads(out)
    assert resolved["id"] == "esc-1" and resolved["resolution"] == "called the customer"
    code, out, _ = run("escalations", "list", "--json", "--status", "all")  # ./modelplane.yaml by default
    assert code == 0 and len(orjson.loads(out)) == 2
    code, out, _ = run("escalations", "list", "--status", "all")  # the table shows what was done, too
    assert code == 0 and "resolution" in out and "called the customer" in out


def test_unknown_or_resolved_id_exits_2_with_a_hint(config: Path) -> None:
    code, _, err = run("escalations", "resolve", "esc-404", "--note", "x", "--config", str(config))
    assert code == 2
    assert "no open escalation 'esc-404'" in err and "hint: `modelplane escalations list --status all`" in err
    assert run("escalations", "resolve", "esc-1", "--note", "x")[0] == 0
    assert run("escalations", "resolve", "esc-1", "--note", "again")[0] == 2


def test_bad_status_exits_2(config: Path) -> None:
    code, _, err = run("escalations", "list", "--status", "closed")
    assert code == 2 and "unknown status 'closed'" in err


def test_empty_queue(tmp_path: Path, config: Path) -> None:
    run("escalations", "resolve", "esc-1", "--note", "x")
    run("escalations", "resolve", "esc-2", "--note", "x")
    code, out, _ = run("escalations", "list")
    assert code == 0 and "no open escalations" in out
