"""Config: the typed schema, errors that name their path, `${ENV}`, versions, `config check`."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from typer.testing import CliRunner

from modelplane.cli.main import app
from modelplane.config.load import EMBEDDED_DEFAULT_YAML, load_config, parse_config
from modelplane.errors import ConfigError

GOOD = """
providers:
  openai: {kind: openai, base_url: https://api.openai.com/v1, api_key: "${OPENAI_API_KEY}"}
  local:  {kind: llamacpp, model: "bundled:gemma-3-270m"}
models:
  small: {provider: openai, name: gpt-4o-mini, price: {input: 0.15, cached_input: 0.075, output: 0.60}}
  large: {provider: openai, name: gpt-4o, price: {input: 2.50, cached_input: 1.25, output: 10.00}}
  local-small: {provider: local, price: {input: 0, output: 0}}
tiers:
  free: {revenue_per_serving: 0}
  pro: {monthly_price: 20, expected_servings_per_month: 400}
features:
  support-reply:
    tiers: [pro]
    route: {strategy: single, models: [small, large]}
keys:
  - {hash: "sha256:0000000000000000000000000000000000000000000000000000000000000000", tenant: acme, tier: pro}
"""


def issues_of(text: str, env: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(text, env={"OPENAI_API_KEY": "sk-test"} if env is None else env)
    return [str(issue) for issue in info.value.issues]


def test_the_design_example_parses_and_secrets_stay_secret() -> None:
    config = parse_config(GOOD, env={"OPENAI_API_KEY": "sk-secret"})
    assert config.models["small"].price is not None and config.models["small"].price.cached_input == 0.075
    api_key = config.providers["openai"].api_key
    assert api_key is not None and api_key.get_secret_value() == "sk-secret"
    assert "sk-secret" not in repr(config) and "sk-secret" not in str(config.providers["openai"])
    assert config.features["support-reply"].tiers == ["pro"]


def test_unknown_model_names_its_path() -> None:
    bad = GOOD.replace("models: [small, large]", "models: [small, gpt-5x]")
    assert issues_of(bad) == [
        "features.support-reply.route.models[1]: unknown model 'gpt-5x' (known: large, local-small, small)"
    ]


def test_every_error_is_reported_not_just_the_first() -> None:
    bad = (
        GOOD.replace("provider: local,", "provider: nowhere,")
        .replace("tier: pro}", "tier: gold}")
        .replace("output: 10.00", "output: -1")
        .replace("kind: openai,", "kind: openai, colour: blue,")
    )
    found = issues_of(bad)
    assert "providers.openai.colour: unknown field" in found
    assert any(issue.startswith("models.large.price.output: ") for issue in found)
    # Structural errors do not hide the cross-section ones: the broken fields are set aside.
    assert "models.local-small.provider: unknown provider 'nowhere' (known: local, openai)" in found
    assert "keys[0].tier: unknown tier 'gold' (known: free, pro)" in found
    assert len(found) == 4
    cross = GOOD.replace("provider: local,", "provider: nowhere,").replace("tier: pro}", "tier: gold}")
    assert sorted(issues_of(cross)) == [
        "keys[0].tier: unknown tier 'gold' (known: free, pro)",
        "models.local-small.provider: unknown provider 'nowhere' (known: local, openai)",
    ]


def test_env_interpolation_with_default_and_missing() -> None:
    text = GOOD.replace('"${OPENAI_API_KEY}"', '"${KEY_A:-fallback}"')
    key = parse_config(text, env={}).providers["openai"].api_key
    assert key is not None and key.get_secret_value() == "fallback"
    missing = issues_of(GOOD, env={})
    assert missing == [
        "providers.openai.api_key: environment variable OPENAI_API_KEY is not set "
        "(use ${OPENAI_API_KEY:-default} for a default)"
    ]


def test_bad_yaml_and_wrong_top_level() -> None:
    assert issues_of("providers: [unclosed")[0].startswith("line 1, column")
    assert issues_of("- a list") == ["the top level must be a mapping of sections"]


def test_llamacpp_needs_a_model_and_tiers_need_servings() -> None:
    found = issues_of(
        GOOD.replace('{kind: llamacpp, model: "bundled:gemma-3-270m"}', "{kind: llamacpp}").replace(
            "monthly_price: 20, expected_servings_per_month: 400", "monthly_price: 20"
        )
    )
    assert any(f.startswith("providers.local: a llamacpp provider needs `model`") for f in found)
    assert any(f.startswith("tiers.pro: `monthly_price` needs") for f in found)


def test_version_is_a_content_hash_plus_git_commit(tmp_path: Path) -> None:
    path = tmp_path / "modelplane.yaml"
    path.write_text(GOOD)
    env = {"OPENAI_API_KEY": "x"}
    plain = load_config(path, home=tmp_path, env=env).version
    assert len(plain) == 12 and "@" not in plain
    path.write_text(GOOD + "\n# changed\n")
    assert load_config(path, home=tmp_path, env=env).version != plain
    git = ["git", "-C", str(tmp_path), "-c", "user.email=t@t", "-c", "user.name=t"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "."], check=True)
    subprocess.run([*git, "commit", "-qm", "c"], check=True)
    commit = subprocess.run([*git, "rev-parse", "--short=12", "HEAD"], capture_output=True, text=True).stdout.strip()
    assert load_config(path, home=tmp_path, env=env).version.endswith("@" + commit)


def test_embedded_default_is_the_local_model_with_a_sqlite_ledger(tmp_path: Path) -> None:
    loaded = load_config(None, home=tmp_path, env={})
    assert loaded.embedded and loaded.config.providers["local"].kind == "llamacpp"
    assert loaded.ledger_url() == f"sqlite:///{tmp_path / 'ledger.db'}"
    assert loaded.config.keys == [] and loaded.config.server.host == "127.0.0.1"
    assert "bundled:gemma-3-270m" in EMBEDDED_DEFAULT_YAML


def test_config_check_exit_codes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODELPLANE_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("OPENAI_API_KEY", "x")
    good, bad = tmp_path / "good.yaml", tmp_path / "bad.yaml"
    good.write_text(GOOD)
    bad.write_text(GOOD.replace("models: [small, large]", "models: [gpt-5x]").replace("tier: pro}", "tier: gold}"))
    runner = CliRunner()
    ok = runner.invoke(app, ["config", "check", "--config", str(good)])
    assert ok.exit_code == 0, ok.output
    assert "3 models" in ok.output
    failed = runner.invoke(app, ["config", "check", "--config", str(bad)])
    assert failed.exit_code == 2
    assert "features.support-reply.route.models[0]: unknown model 'gpt-5x'" in failed.output
    assert "keys[0].tier: unknown tier 'gold'" in failed.output
    assert "Traceback" not in failed.output
    missing = runner.invoke(app, ["config", "check", "--config", str(tmp_path / "nope.yaml")])
    assert missing.exit_code == 2 and "config file not found" in missing.output
    bad_flag = runner.invoke(app, ["config", "check", "--colour"])
    assert bad_flag.exit_code == 2
