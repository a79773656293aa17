"""`modelplane keys new` prints an entry `config check` accepts: its tier is one the config declares."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from modelplane.cli.main import app
from modelplane.serving.auth import hash_key

CONFIG = """
providers: {up: {kind: openai, base_url: "http://127.0.0.1:1/v1"}}
models: {small: {provider: up}}
features: {chat: {route: {models: [small]}}}
"""


@pytest.fixture(autouse=True)
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODELPLANE_HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, list(args), env={"COLUMNS": "200"})
    return result.exit_code, result.stdout, result.stderr


def new_key(config: Path, *args: str) -> tuple[str, str]:
    code, out, err = run("keys", "new", "--tenant", "acme", "--config", str(config), *args)
    assert code == 0, err
    key = re.search(r"key:\s+(\S+)", out)
    entry = re.search(r"entry: (- \{.*\})", out)
    assert key is not None and entry is not None
    return key[1], entry[1]


def test_the_entry_passes_config_check(tmp_path: Path) -> None:
    config = tmp_path / "modelplane.yaml"
    config.write_text(CONFIG + "tiers: {free: {}, pro: {}}\n")
    key, entry = new_key(config, "--tier", "pro")
    assert hash_key(key) in entry and "tier: pro" in entry
    config.write_text(config.read_text() + f"keys:\n  {entry}\n")
    code, out, err = run("config", "check", "--config", str(config))
    assert code == 0, err
    assert "1 keys" in out


def test_the_only_tier_is_the_default(tmp_path: Path) -> None:
    config = tmp_path / "modelplane.yaml"
    config.write_text(CONFIG + "tiers: {pro: {}}\n")
    assert "tier: pro}" in new_key(config)[1]
    config.write_text(CONFIG)  # no tiers declared: the implicit `default` tier
    assert "tier: default}" in new_key(config)[1]


def test_a_tier_the_config_does_not_declare_is_refused(tmp_path: Path) -> None:
    config = tmp_path / "modelplane.yaml"
    config.write_text(CONFIG + "tiers: {free: {}, pro: {}}\n")
    code, out, err = run("keys", "new", "--tenant", "acme", "--config", str(config), "--tier", "nosuch")
    assert code == 2 and not out
    assert "unknown tier 'nosuch' (the config's tiers: free, pro)" in err and "hint: pass --tier NAME" in err
    code, out, err = run("keys", "new", "--tenant", "acme", "--config", str(config))
    assert code == 2 and not out
    assert "the config has several tiers (free, pro)" in err


def test_a_tenant_name_with_yaml_syntax_is_quoted_in_the_entry(tmp_path: Path) -> None:
    config = tmp_path / "modelplane.yaml"
    config.write_text(CONFIG + "tiers: {pro: {}}\n")
    code, out, err = run("keys", "new", "--tenant", "acme, inc: eu", "--config", str(config))
    assert code == 0, err
    entry = re.search(r"entry: (- \{.*\})", out)
    assert entry is not None and 'tenant: "acme, inc: eu"' in entry[1]
    config.write_text(config.read_text() + f"keys:\n  {entry[1]}\n")
    code, out, err = run("config", "check", "--config", str(config))
    assert code == 0, err
