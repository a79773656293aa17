"""Config of rate limits and budgets: per key `rpm`/`tpm`, `tenants.NAME.budget`, `features.NAME.budget`."""

from __future__ import annotations

import pytest

from modelplane.config.load import parse_config
from modelplane.errors import ConfigError

BASE = """
providers: {up: {kind: openai, base_url: "http://127.0.0.1:9/v1"}}
models: {m: {provider: up}}
features:
  f: {route: {models: [m]}, budget: {usd_per_day: 5, tokens_per_month: 1000000}}
"""
KEY = '{hash: "sha256:' + "0" * 64 + '", tenant: acme, rpm: 60, tpm: 10000}'


def issues_of(text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(text, env={})
    return [str(issue) for issue in info.value.issues]


def test_limits_and_budgets_parse() -> None:
    config = parse_config(BASE + f"keys: [{KEY}]\ntenants: {{acme: {{budget: {{usd_per_month: 100}}}}}}\n", env={})
    assert (config.keys[0].rpm, config.keys[0].tpm) == (60, 10000)
    budget = config.tenants["acme"].budget
    assert budget is not None and budget.usd_per_month == 100 and budget.usd_per_day is None and budget.limited
    feature_budget = config.features["f"].budget
    assert feature_budget is not None and feature_budget.tokens_per_month == 1_000_000


def test_a_budget_for_a_tenant_no_key_belongs_to_is_an_error() -> None:
    text = BASE + f"keys: [{KEY}]\ntenants: {{acme: {{}}, acne: {{budget: {{usd_per_day: 1}}}}}}\n"
    assert issues_of(text) == ["tenants.acne: no key belongs to tenant 'acne' (known: acme)"]
    assert issues_of(BASE + "tenants: {acme: {}}\n") == [
        "tenants.acme: with no keys configured, every caller is tenant 'local'"
    ]
    parse_config(BASE + "tenants: {local: {budget: {tokens_per_day: 10}}}\n", env={})


def test_bad_limits_name_their_path() -> None:
    bad = BASE + "keys: [" + KEY.replace("rpm: 60", "rpm: 0") + "]\ntenants: {acme: {budget: {usd_per_day: -1}}}\n"
    issues = issues_of(bad)
    assert any(issue.startswith("keys[0].rpm:") for issue in issues)
    assert any(issue.startswith("tenants.acme.budget.usd_per_day:") for issue in issues)
    typo = issues_of(BASE.replace("usd_per_day", "usd_per_year"))
    assert any(issue.startswith("features.f.budget.usd_per_year:") for issue in typo)
