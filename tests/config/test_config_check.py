"""`config check` says at once everything `serve` would refuse: YAML 1.1 `off`, schema files,
structural and cross-section errors together; and provider secrets only where they are needed."""

from __future__ import annotations

import hashlib
import re
from itertools import count
from pathlib import Path

import pytest
from typer.testing import CliRunner

from modelplane.cli.main import app
from modelplane.config.load import load_config, parse_config
from modelplane.errors import ConfigError

README = Path(__file__).parents[2] / "README.md"

CONFIG = """
providers:
  openai: {kind: openai, api_key: "${OPENAI_API_KEY}"}
models:
  small: {provider: openai, price: {input: 1, output: 1}}
tiers:
  free: {}
features:
  reply:
    route: {models: [small]}
    output: {json_schema: schemas/reply.json}
"""


def check(config: Path, **env: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["config", "check", "--config", str(config)], env=env)
    return result.exit_code, result.output


def issues_of(text: str, *, config_dir: Path | None = None, env: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(text, env={"OPENAI_API_KEY": "sk-test"} if env is None else env, config_dir=config_dir)
    return [str(issue) for issue in info.value.issues]


def test_yaml_off_is_tracing_off() -> None:
    for spelling in ("off", "false", "no", "'off'"):
        config = parse_config(f"telemetry: {{metrics: true, tracing: {spelling}}}", env={})
        assert config.telemetry.tracing == "off", spelling
    assert issues_of("telemetry: {tracing: on}") == ["telemetry.tracing: Input should be 'off', 'console' or 'otlp'"]


def test_the_readme_config_passes_config_check(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The README's example, with its `sha256:…` placeholders filled in and its schema file present."""
    block = re.search(r"```yaml\n(.*?)```", README.read_text(encoding="utf-8").split("\n## Config\n", 1)[1], re.S)
    assert block is not None
    numbers = count()
    text = re.sub(r"sha256:…", lambda _: f"sha256:{hashlib.sha256(bytes([next(numbers)])).hexdigest()}", block[1])
    (tmp_path / "schemas").mkdir()
    (tmp_path / "schemas" / "reply.json").write_text('{"type": "object", "required": ["reply"]}')
    (tmp_path / "modelplane.yaml").write_text(text)
    monkeypatch.setenv("MODELPLANE_HOME", str(tmp_path / "home"))
    code, out = check(tmp_path / "modelplane.yaml", OPENAI_API_KEY="sk-x", ANTHROPIC_API_KEY="sk-y")
    assert code == 0, out
    assert out.startswith("ok: ")


def test_schema_files_are_checked_with_their_paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODELPLANE_HOME", str(tmp_path / "home"))
    features = """
  a: {route: {models: [small]}, output: {json_schema: schemas/missing.json}}
  b: {route: {models: [small]}, output: {json_schema: schemas/broken.json}}
  c: {route: {models: [small]}, output: {json_schema: schemas/not-a-schema.json}}
  d: {route: {models: [small]}, output: {json_schema: {type: 12}}}
  e: {route: {models: [small]}, output: {json_schema: schemas/good.json}}
"""
    schemas = tmp_path / "schemas"
    schemas.mkdir()
    (schemas / "broken.json").write_text('{"type": "object",')
    (schemas / "not-a-schema.json").write_text('{"type": "objekt"}')
    (schemas / "good.json").write_text('{"type": "object"}')
    config = tmp_path / "modelplane.yaml"
    config.write_text(CONFIG.split("features:")[0] + "features:" + features)
    code, out = check(config, OPENAI_API_KEY="sk-x")
    assert code == 2, out
    assert f"features.a.output.json_schema: cannot read schema file {schemas / 'missing.json'}" in out
    assert f"features.b.output.json_schema: schema file {schemas / 'broken.json'} does not parse" in out
    assert "features.c.output.json_schema: not a valid JSON Schema" in out
    assert "features.d.output.json_schema: not a valid JSON Schema" in out
    assert "features.e." not in out and "4 problem(s)" in out
    for name in ("missing", "broken", "not-a-schema"):
        (schemas / f"{name}.json").write_text('{"type": "object"}')
    config.write_text(config.read_text().replace("{type: 12}", "{type: object}"))
    assert check(config, OPENAI_API_KEY="sk-x")[0] == 0


def test_structural_errors_do_not_hide_the_others() -> None:
    text = """
providers:
  openai: {kind: openai}
  broken: {kind: nosuch}
models:
  small: {provider: openai, price: {input: -1, output: 1}}
  big: {provider: nope}
  on-broken: {provider: broken}
tiers:
  free: {}
  pro: {revenue_per_serving: lots}
features:
  f: {route: {models: [small, gpt-5x]}, tiers: [pro, gold], deadlin: 20}
  g: {route: {models: [small, big, on-broken]}, tiers: [pro]}
keys:
  - {hash: "sha256:bad", tenant: acme, tier: pro}
  - {hash: "sha256:0000000000000000000000000000000000000000000000000000000000000001", tenant: ops, tier: gold}
  - {hash: "sha256:0000000000000000000000000000000000000000000000000000000000000001", tenant: ops, tier: free}
tenants:
  acme: {budget: {usd_per_day: 1}}
server: {port: x}
cache: {backend: redis, max_bytes: 1}
"""
    assert issues_of(text) == [
        # structural, from the schema
        "providers.broken.kind: Input should be 'openai', 'anthropic' or 'llamacpp'",
        "models.small.price.input: Input should be greater than or equal to 0",
        "tiers.pro.revenue_per_serving: Input should be a valid number, unable to parse string as a number",
        "features.f.deadlin: unknown field",
        "keys[0].hash: String should match pattern '^sha256:[0-9a-f]{64}$'",
        "server.port: Input should be a valid integer, unable to parse string as an integer",
        "cache.max_bytes: Input should be greater than or equal to 1024",
        # and between sections, found with the broken parts set aside: no 'unknown provider
        # broken', 'unknown tier pro' or 'no key belongs to tenant acme'
        "models.big.provider: unknown provider 'nope' (known: broken, openai)",
        "features.f.route.models[1]: unknown model 'gpt-5x' (known: big, on-broken, small)",
        "features.f.tiers[1]: unknown tier 'gold' (known: free, pro)",
        "keys[1].tier: unknown tier 'gold' (known: free, pro)",
        "keys[2].hash: the same key is already listed as keys[1]",
        "cache.backend: the redis backend needs a `redis:` section with its url",
    ]


def test_a_malformed_section_of_names_reports_what_it_can() -> None:
    # With `models` not a mapping, references to models cannot be checked: none are claimed unknown.
    found = issues_of("models: [small]\nfeatures:\n  f: {route: {models: [small]}}\n")
    assert found == ["models: Input should be a valid dictionary"]


def test_secrets_are_needed_only_where_providers_are_called(tmp_path: Path) -> None:
    path = tmp_path / "modelplane.yaml"
    path.write_text(CONFIG.replace("output: {json_schema: schemas/reply.json}", ""))
    with pytest.raises(ConfigError) as info:
        load_config(path, home=tmp_path, env={})
    assert [str(i) for i in info.value.issues] == [
        "providers.openai.api_key: environment variable OPENAI_API_KEY is not set "
        "(use ${OPENAI_API_KEY:-default} for a default)"
    ]
    loaded = load_config(path, home=tmp_path, env={}, secrets=False)
    assert loaded.config.models["small"].provider == "openai"
    # Everything else is still checked, and still interpolated.
    path.write_text(CONFIG.replace("models: [small]", "models: [nope]") + 'ledger: {url: "${LEDGER_URL}"}\n')
    with pytest.raises(ConfigError) as info:
        load_config(path, home=tmp_path, env={}, secrets=False)
    found = [str(i) for i in info.value.issues]
    assert found[0].startswith("ledger.url: environment variable LEDGER_URL is not set")
    assert found[1].startswith("features.reply.route.models[0]: unknown model 'nope'")
    assert not any("OPENAI_API_KEY" in issue for issue in found)


def test_config_check_names_a_directory(tmp_path: Path) -> None:
    code, out = check(tmp_path)
    assert code == 2
    assert f"{tmp_path} is a directory, not a config file" in out and "not found" not in out


def test_a_deterministic_answer_must_keep_the_features_json_promise(tmp_path: Path) -> None:
    features = """
features:
  prose:
    route: {models: [small], deterministic_fallback: "We could not answer right now."}
    output: {json_schema: {type: object, required: [reply]}}
  wrong-shape:
    route: {models: [small], deterministic_fallback: '{"answer": "later"}'}
    output: {json_schema: {type: object, required: [reply]}}
  fine:
    route: {models: [small], deterministic_fallback: '{"reply": "later"}'}
    output: {json_schema: {type: object, required: [reply]}}
"""
    text = CONFIG.split("features:")[0] + features.lstrip("\n")
    found = issues_of(text, config_dir=tmp_path, env={"OPENAI_API_KEY": "sk-x"})
    assert found == [
        "features.prose.route.deterministic_fallback: does not match the feature's output schema: is not JSON",
        "features.wrong-shape.route.deterministic_fallback: does not match the feature's output schema: "
        "$: 'reply' is a required property",
    ]


def test_a_key_given_twice_is_an_error_not_a_silent_last_wins() -> None:
    text = "models:\n  small: {provider: openai}\n  large: {provider: openai}\n  small: {provider: openai}\n"
    assert issues_of(text) == ["line 4, column 3: not valid YAML: duplicate key 'small' (first on line 2)"]
    # A merge may bring in a key the mapping then overrides: that is what `<<:` is for.
    merged = CONFIG.replace(
        "  small: {provider: openai, price: {input: 1, output: 1}}\n",
        "  small: &d {provider: openai, price: {input: 1, output: 1}}\n  large: {<<: *d, name: gpt-x}\n",
    )
    config = parse_config(merged.replace("output: {json_schema: schemas/reply.json}", ""), env={"OPENAI_API_KEY": "k"})
    assert config.models["large"].name == "gpt-x" and config.models["large"].provider == "openai"
