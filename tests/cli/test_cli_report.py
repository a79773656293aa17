"""`modelplane report` against a SQLite ledger named by the config: table, JSON, file output, bad input."""

from __future__ import annotations

import asyncio
from pathlib import Path

import jsonschema
import orjson
import pytest
from typer.testing import CliRunner

from modelplane.cli.main import app
from modelplane.economics.report import report_schema
from reportledger import CONFIG_YAML, hand_ledger, seed


@pytest.fixture
def config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("MODELPLANE_HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "modelplane.yaml"
    path.write_text(CONFIG_YAML + f'ledger: {{url: "sqlite:///{tmp_path}/ledger.db"}}\n')
    asyncio.run(seed(f"sqlite:///{tmp_path}/ledger.db", hand_ledger()))
    return path


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, ["report", *args], env={"COLUMNS": "240"})
    return result.exit_code, result.stdout, result.stderr


def test_table_shows_each_feature_and_tier_with_cost_and_margin(config: Path) -> None:
    code, out, err = run("--config", str(config))
    assert code == 0, err
    assert "support-reply" in out and "summarize" in out and "tier pro" in out
    assert "$0.002250" in out  # support-reply / pro: mean cost per serving
    assert "$0.047750" in out  # and its margin: $0.05 - $0.00225
    assert "95.5%" in out
    assert "small 75.0%, large 25.0%" not in out  # model mix is per feature, not per feature/tier
    assert "small 66.7%" in out  # support-reply: 4 of 6 calls
    assert "projected monthly cost" in out and "10,000,000" in out and "assumptions" in out
    assert "1 call(s) in 1 serving(s) have no price" in out


def test_json_validates_and_filters_apply(config: Path) -> None:
    code, out, err = run("--format", "json", "--feature", "support-reply", "--tier", "pro")
    assert code == 0, err
    data = orjson.loads(out)
    jsonschema.Draft202012Validator(report_schema()).validate(data)
    assert data["features_filter"] == ["support-reply"] and data["tiers_filter"] == ["pro"]
    assert [row["feature"] for row in data["features"]] == ["support-reply"]
    assert data["total"]["servings"] == 4
    assert data["total"]["cost_per_serving_usd"]["mean"] == pytest.approx(0.00225)


def test_dates_bound_the_window(config: Path) -> None:
    code, out, _ = run("--format", "json", "--since", "2026-01-02")
    assert code == 0 and orjson.loads(out)["total"]["servings"] == 1  # summarize, two days in
    code, out, _ = run("--format", "json", "--until", "2026-01-01")  # a bare date includes its day
    assert code == 0 and orjson.loads(out)["total"]["servings"] == 6
    code, out, _ = run("--format", "json", "--until", "2026-01-01T00:00:30")
    assert code == 0 and orjson.loads(out)["total"]["servings"] == 3  # s1, s2 (both requests), s3


def test_out_writes_a_file(config: Path, tmp_path: Path) -> None:
    target = tmp_path / "report.json"
    code, out, _ = run("--format", "json", "--out", str(target), "--what-if", "route 30% of support-reply to half")
    assert code == 0 and f"wrote {target}" in out
    data = orjson.loads(target.read_bytes())
    assert data["projection"]["what_ifs"] == ["route 30% of support-reply to half"]


@pytest.mark.parametrize(
    ("args", "message", "hint"),
    [
        (["--since", "last tuesday"], "--since: not a date or time: 'last tuesday'", "hint: use a date"),
        (["--until", "2026-13-01"], "--until: not a date or time", "hint: use a date"),
        (["--since", "2026-02-01", "--until", "2026-01-01"], "--since is not before --until", "hint:"),
        (["--feature", "nope"], "unknown feature 'nope'", "hint: features: summarize, support-reply"),
        (["--tier", "gold"], "unknown tier 'gold'", "hint: tiers: free, pro"),
        (["--format", "pdf"], "unknown format 'pdf'", "hint: use one of table, json"),
        (["--what-if", "make it cheaper"], "unknown what-if 'make it cheaper'", 'hint: use "route P% of'),
        (["--config", "missing.yaml"], "config file not found", "hint:"),
    ],
)
def test_bad_input_exits_2_with_a_hint(config: Path, args: list[str], message: str, hint: str) -> None:
    code, out, err = run(*args)
    assert code == 2, out
    assert message in err and hint in err
    assert "Traceback" not in err



def test_reprice_flag_runs(config: Path) -> None:
    """`--reprice` end to end through the CLI: the JSON it prints still validates."""
    code, out, err = run("--config", str(config), "--format", "json", "--reprice")
    assert code == 0, err
    data = orjson.loads(out)
    jsonschema.validate(data, report_schema())
    assert data["total"]["servings"] == 7


def test_a_relative_sqlite_ledger_is_read_from_the_config_files_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = tmp_path / "project"
    (project / "data").mkdir(parents=True)
    asyncio.run(seed(f"sqlite:///{project}/data/ledger.db", hand_ledger()))
    (project / "modelplane.yaml").write_text(CONFIG_YAML + 'ledger: {url: "sqlite:///data/ledger.db"}\n')
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # not the config's folder
    monkeypatch.setenv("MODELPLANE_HOME", str(tmp_path / "home"))
    code, out, _ = run("--config", str(project / "modelplane.yaml"), "--format", "json")
    assert code == 0 and orjson.loads(out)["total"]["servings"] > 0
    assert not (elsewhere / "data").exists()


def test_a_missing_ledger_is_an_error_not_an_empty_report(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MODELPLANE_HOME", str(tmp_path / "home"))
    (tmp_path / "modelplane.yaml").write_text(CONFIG_YAML + 'ledger: {url: "sqlite:///nowhere/ledger.db"}\n')
    code, _, err = run("--config", "modelplane.yaml")
    assert code == 2 and f"no ledger at {tmp_path / 'nowhere' / 'ledger.db'}" in err
    assert not (tmp_path / "nowhere").exists()  # nothing left behind
