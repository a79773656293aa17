"""`modelplane router train|eval`: figures on a small fixture, exit 2 with a one-line reason on bad input."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from modelplane.cli.main import app
from modelplane.ledger import LedgerStore

DATA = Path(__file__).parent / "data"
A, B = str(DATA / "outcomes_a.csv"), str(DATA / "outcomes_b.csv")
COLUMNS = ["--weak", "weak-model", "--strong", "strong-model"]
SMALL_PENALTIES = ["--embedding-l2", "1", "--text-l2", "1"]  # 40 prompts: the defaults are sized for thousands

CONFIG = """
providers:
  up: {kind: openai, base_url: "http://127.0.0.1:9/v1", api_key: sk-test}
models:
  small: {provider: up, name: small, price: {input: 0.2, output: 0.8}}
  large: {provider: up, name: large, price: {input: 2.0, output: 8.0}}
features:
  chat: {route: {strategy: single, models: [small]}}
"""


def invoke(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, ["router", *args], env={"COLUMNS": "200"})
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture(scope="module")
def router_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("router") / "router.json"
    code, stdout, stderr = invoke("train", "--data", A, *COLUMNS, "--out", str(out), *SMALL_PENALTIES)
    assert code == 0, stderr
    assert "router " in stdout and out.is_file()
    return out


def test_train_with_a_held_out_file_reports_on_it(tmp_path: Path) -> None:
    out = tmp_path / "r.json"
    code, stdout, stderr = invoke(
        "train", "--data", A, "--data", B, *COLUMNS, "--out", str(out), "--holdout", "outcomes_b", *SMALL_PENALTIES
    )
    assert code == 0, stderr
    assert "held out: outcomes_b" in stdout and "APGR" in stdout
    assert json.loads(out.read_text())["info"]["prompts"] == 22


def test_eval_json_with_prices(router_file: Path) -> None:
    code, stdout, stderr = invoke(
        "eval", "--router", str(router_file), "--data", B, "--weak-price", "1", "--strong-price", "10", "--json"
    )
    assert code == 0, stderr
    figures = json.loads(stdout)
    assert figures["prompts"] == 20 and figures["weak_accuracy"] == 0.5 and figures["strong_accuracy"] == 1.0
    assert figures["apgr"] > 0.7  # random 0.5; the router learned from file a that the arithmetic needs strong
    assert 0 < figures["cpt50"] <= figures["cpt80"] <= figures["cpt95"] <= 1
    # 95 % of strong quality is 0.95 accuracy, PGR 0.9: at best 45 % strong calls, saving ≥ 1 - (4.5 + 0.55) / 10.
    assert figures["saving_at_95_quality"] == pytest.approx(1 - (figures["share_at_95_quality"] * 9 + 1) / 10)
    assert figures["saving_at_95_quality"] > 0.4
    assert set(figures["thresholds"]) == {"cpt50", "cpt80", "cpt95"}


def test_eval_table_priced_from_the_config(router_file: Path, tmp_path: Path) -> None:
    config = tmp_path / "modelplane.yaml"
    config.write_text(CONFIG)
    args = ["--config", str(config), "--weak-model", "small", "--strong-model", "large"]
    code, stdout, stderr = invoke("eval", "--router", str(router_file), "--data", B, *args)
    assert code == 0, stderr
    assert "APGR" in stdout and "CPT(95%)" in stdout and "no prices given" not in stdout


@pytest.mark.parametrize(
    ("args", "reason"),
    [
        (["--data", A, "--weak", "nope"], "no column 'nope'"),
        (["--data", "/no/such.csv"], "cannot read /no/such.csv"),
        (["--data", A, "--weak-price", "1"], "give both prices"),
        (["--data", A, "--weak-model", "small"], "name both models"),
    ],
)
def test_eval_bad_input_exits_2(router_file: Path, args: list[str], reason: str) -> None:
    code, _, stderr = invoke("eval", "--router", str(router_file), *args)
    assert code == 2
    assert reason in stderr and "Traceback" not in stderr


def test_bad_router_file_exits_2(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"format": "modelplane-router", "format_version": 7}')
    code, _, stderr = invoke("eval", "--router", str(bad), "--data", A, *COLUMNS)
    assert code == 2
    assert "router format version 7" in stderr
    code, _, stderr = invoke("eval", "--router", str(tmp_path / "missing.json"), "--data", A, *COLUMNS)
    assert code == 2 and "no such router file" in stderr


def test_data_takes_several_files_after_one_flag(tmp_path: Path) -> None:
    """`--data a.csv b.csv` — what `--data *.csv` expands to — reads both, like `--data a.csv --data b.csv`."""
    out = tmp_path / "r.json"
    code, stdout, stderr = invoke("train", "--data", A, B, *COLUMNS, "--out", str(out), *SMALL_PENALTIES)
    assert code == 0, stderr
    assert "(42 prompts" in stdout
    assert json.loads(out.read_text())["info"]["data"] == ["outcomes_a.csv", "outcomes_b.csv"]
    code, stdout, stderr = invoke("eval", "--router", str(out), "--data", A, B, "--json")
    assert code == 0, stderr
    assert json.loads(stdout)["prompts"] == 42
    code, _, stderr = invoke("eval", "--router", str(out))
    assert code == 2 and "no data to measure the router on" in stderr


def test_train_bad_input_exits_2(tmp_path: Path) -> None:
    out = str(tmp_path / "r.json")
    code, _, stderr = invoke("train", "--data", A, "--weak", "weak-model", "--strong", "gone", "--out", out)
    assert code == 2 and "no column 'gone'" in stderr
    code, _, stderr = invoke("train", "--data", A, *COLUMNS, "--out", out, "--holdout", "outcomes_z")
    assert code == 2 and "names no data file" in stderr
    assert not Path(out).exists()


async def _create_ledger(url: str) -> None:
    store = LedgerStore.from_url(url)
    await store.open()
    await store.close()


def test_train_needs_data_and_an_empty_ledger_has_none(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODELPLANE_HOME", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    out = str(tmp_path / "r.json")
    code, _, stderr = invoke("train", "--out", out)
    assert code == 2 and "no training data" in stderr
    code, _, stderr = invoke("train", "--out", out, "--from-ledger")
    assert code == 2 and f"no ledger at {tmp_path / 'ledger.db'}" in stderr  # and none is left behind
    assert not (tmp_path / "ledger.db").exists()
    asyncio.run(_create_ledger(f"sqlite:///{tmp_path / 'ledger.db'}"))
    code, _, stderr = invoke("train", "--out", out, "--from-ledger")
    assert code == 2 and "no judged servings" in stderr


async def _judged_ledger(url: str) -> None:
    """A ledger with 40 judged shadows of two features: the weak model fails the arithmetic."""
    import sqlalchemy as sa

    from modelplane.routing.shadow import SHADOWS

    store = LedgerStore.from_url(url)
    await store.open()
    rows = []
    for i in range(40):
        hard = i % 2 == 0
        rows.append(
            {
                "serving_id": f"s{i:03d}",
                "feature": "ask" if i < 20 else "other",
                "ts": 1_750_000_000.0 + i,
                "weak_model": "small",
                "strong_model": "large",
                "weak_cost": 0.001,
                "strong_cost": 0.01,
                "verdict": "weak_worse" if hard else "tie",
                "score": 0.0 if hard else 1.0,
                "weak_ok": not hard,
                "strong_ok": True,
                "prompt": f"Compute ({i} * 17 - 3^3) / 3 modulo 19." if hard else f"What colour is fruit {i}?",
                "config_version": "v",
            }
        )
    async with store.engine.begin() as conn:
        await conn.execute(sa.insert(SHADOWS), rows)
    await store.close()


def test_train_from_the_ledgers_judged_servings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODELPLANE_HOME", str(tmp_path / "home"))
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    config = tmp_path / "modelplane.yaml"
    config.write_text(
        CONFIG.replace("  chat: {route: {strategy: single, models: [small]}}\n", "")
        + "  ask: {route: {models: [small]}}\n  other: {route: {models: [small]}}\n"
        + f'ledger: {{url: "{url}"}}\n'
    )
    asyncio.run(_judged_ledger(url))
    out = tmp_path / "r.json"
    args = ["--out", str(out), "--from-ledger", "--config", str(config), *SMALL_PENALTIES]
    code, stdout, stderr = invoke("train", *args)
    assert code == 0, stderr
    assert "(40 prompts" in stdout
    router = json.loads(out.read_text())
    assert router["info"]["ledger"] is True and router["info"]["cross_fitting"] == "4 parts by prompt"
    code, stdout, stderr = invoke("train", *args, "--feature", "ask")
    assert code == 0, stderr
    assert "(20 prompts" in stdout
    # CSV files and the ledger together: each file and each feature a group.
    code, stdout, stderr = invoke("train", *args, "--data", A, B, *COLUMNS)
    assert code == 0, stderr
    assert "(82 prompts" in stdout and json.loads(out.read_text())["info"]["cross_fitting"] == "4 parts by group"
