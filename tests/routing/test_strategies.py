"""Routing decisions on fixed inputs: weighted (sticky) splits, rules, learned thresholds, cascade
checks, judge parsing, and the config errors a bad route gives."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from modelplane.config.load import load_config, parse_config
from modelplane.config.schema import AcceptConfig, RouteRule
from modelplane.errors import ConfigError
from modelplane.routing.judge import parse_comparison, parse_score
from modelplane.routing.strategies import (
    Cascade,
    Facts,
    Learned,
    Rules,
    Weighted,
    bucket,
    build,
    pick_split,
    request_metadata,
    request_text,
)
from modelplane.serving.cascade import failed_check, mean_logprob

MODELS = ("small", "large")


def weighted(sticky: str = "tenant", small: float = 90.0) -> Weighted:
    return Weighted("reply", (("small", small), ("large", 100.0 - small)), sticky)


def test_the_same_tenant_gets_the_same_model_every_time() -> None:
    split = weighted()
    for tenant in ("acme", "globex", "initech", "umbrella"):
        picks = {split.decide(MODELS, Facts(tenant=tenant, request_id=f"r{i}")).model for i in range(1000)}
        assert len(picks) == 1, tenant


def test_a_sticky_split_holds_its_proportions_over_many_tenants() -> None:
    split = weighted(small=90.0)
    picks = Counter(split.decide(MODELS, Facts(tenant=f"tenant-{i}")).model for i in range(20_000))
    assert picks["small"] / 20_000 == pytest.approx(0.90, abs=0.01)
    assert picks["large"] / 20_000 == pytest.approx(0.10, abs=0.01)


def test_sticky_serving_keys_on_the_serving_and_none_draws_per_request() -> None:
    by_serving = weighted("serving", small=50.0)
    one = {
        by_serving.decide(MODELS, Facts(tenant=f"t{i}", serving_id="s-1", request_id=f"r{i}")).model for i in range(200)
    }
    assert len(one) == 1
    fresh = weighted("none", small=50.0)
    many = Counter(fresh.decide(MODELS, Facts(tenant="acme", request_id=f"r{i}")).model for i in range(4000))
    assert many["small"] / 4000 == pytest.approx(0.5, abs=0.04)


def test_the_bucket_is_stable_and_the_split_edges_are_exact() -> None:
    assert bucket("reply", "acme") == bucket("reply", "acme") != bucket("other", "acme")
    assert 0 <= bucket("x") < 100
    split = (("a", 10.0), ("b", 0.0), ("c", 90.0))
    assert [pick_split(split, p) for p in (0.0, 9.999, 10.0, 99.999)] == ["a", "a", "c", "c"]


def test_weighted_audit_names_the_bucket() -> None:
    decision = weighted().decide(MODELS, Facts(tenant="acme"))
    assert decision.strategy == "weighted" and decision.candidates_text == "small,large"
    assert decision.score == pytest.approx(bucket("reply", "acme"), abs=1e-4) and "sticky tenant" in decision.reason


def rules() -> Rules:
    return Rules(
        (
            RouteRule(model="large", tools=True),
            RouteRule(model="large", metadata={"plan": "vip"}),
            RouteRule(model="small", tier=["free"]),
            RouteRule(model="large", min_tokens=500),
            RouteRule(model="small", max_tokens=50),
        ),
        default="large",
    )


@pytest.mark.parametrize(
    ("facts", "model", "reason"),
    [
        (Facts(tier="free", text="hi", tools=True), "large", "rules[0]"),
        (Facts(tier="free", text="hi", metadata={"plan": "vip"}), "large", "rules[1]"),
        (Facts(tier="free", text="hi", metadata={"plan": "basic"}), "small", "rules[2]"),
        (Facts(tier="pro", text="x" * 2000), "large", "rules[3]"),
        (Facts(tier="pro", text="x" * 200), "small", "rules[4]"),  # 50 tokens: max is inclusive
        (Facts(tier="pro", text="x" * 201), "large", "default"),  # 51 tokens
    ],
)
def test_rules_pick_by_tools_metadata_tier_and_length(facts: Facts, model: str, reason: str) -> None:
    decision = rules().decide(MODELS, facts)
    assert (decision.model, decision.reason) == (model, reason)


def test_facts_from_a_request_body() -> None:
    body = {
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": [{"type": "text", "text": "What is 2+2?"}, {"type": "image_url"}]},
        ],
        "metadata": {"plan": "vip", "n": 3},
    }
    assert request_text(body) == "Be brief.\nWhat is 2+2?"
    assert request_metadata(body) == {"plan": "vip", "n": "3"}
    assert Facts(text="abcde").tokens == 2


class LengthRouter:
    """A stand-in learned router: long prompts need the strong model."""

    version = "stand-in-1"
    embedder = "wordllama/l2_supercat-256"

    def score(self, text: str, vector: np.ndarray) -> float:
        assert vector.shape == (4,)
        return min(1.0, len(text) / 100)

    def threshold_for_share(self, strong_share: float) -> float:
        return 1 - strong_share  # as if its scores were spread evenly over [0, 1]


@pytest.mark.parametrize(
    ("length", "threshold", "model"), [(10, 0.5, "small"), (60, 0.5, "large"), (50, 0.5, "large"), (60, 0.7, "small")]
)
def test_learned_routes_strong_iff_the_score_reaches_the_threshold(length: int, threshold: float, model: str) -> None:
    learned = Learned(LengthRouter(), "small", "large", threshold)
    facts = Facts(text="x" * length, vector=np.zeros(4, np.float32), embedder=LengthRouter.embedder)
    decision = learned.decide(MODELS, facts)
    assert decision.model == model
    assert decision.score == pytest.approx(length / 100) and decision.threshold == threshold
    assert decision.reason == "router stand-in-1"


def test_strong_share_picks_the_threshold_from_the_router() -> None:
    config = parse_config(
        CONFIG.replace("ROUTE", "{strategy: learned, router: r.json, weak: small, strong: large, strong_share: 0.3}"),
        env={},
    )
    learned = build("reply", config.features["reply"].route, LengthRouter())
    assert isinstance(learned, Learned) and learned.threshold == pytest.approx(0.7)
    facts = Facts(text="x" * 75, vector=np.zeros(4, np.float32), embedder=LengthRouter.embedder)
    assert learned.decide(MODELS, facts).model == "large"
    both = "{strategy: learned, router: r.json, weak: small, strong: large, strong_share: 0.3, threshold: 0.6}"
    assert issues(both) == ["features.reply.route: give `threshold` or `strong_share`, not both"]
    assert issues("{strategy: weighted, split: {small: 100}, strong_share: 0.3}") == [
        "features.reply.route: `strong_share` is for strategy 'learned', not 'weighted'"
    ]


def test_an_old_or_damaged_router_file_fails_config_check(tmp_path: Path) -> None:
    """`config check` loads the router, so an upgrade that retires its format fails there, not at `serve`."""
    path = tmp_path / "modelplane.yaml"
    path.write_text(CONFIG.replace("ROUTE", "{strategy: learned, router: r.json, weak: small, strong: large}"))
    (tmp_path / "r.json").write_text('{"format": "modelplane-router", "format_version": 2}')
    with pytest.raises(ConfigError) as info:
        load_config(path, home=tmp_path, env={})
    [issue] = [str(i) for i in info.value.issues]
    assert issue.startswith(f"features.reply.route.router: {tmp_path / 'r.json'}: router format version 2")
    assert issue.endswith("retrain it with `modelplane router train`")


def test_cascade_starts_with_the_cheapest() -> None:
    assert Cascade().decide(MODELS, Facts()).model == "small"


def answer(content: str, logprobs: list[float] | None = None) -> dict[str, object]:
    choice: dict[str, object] = {"index": 0, "message": {"role": "assistant", "content": content}}
    if logprobs is not None:
        choice["logprobs"] = {"content": [{"token": "t", "logprob": p} for p in logprobs]}
    return {"choices": [choice]}


def test_cascade_checks_fail_exactly_when_they_should() -> None:
    assert failed_check(AcceptConfig(), answer("fine"), None) is None
    assert failed_check(AcceptConfig(), answer("  "), None) == "empty answer"
    assert failed_check(AcceptConfig(contains="Paris"), answer("It is Lyon"), None) == "does not contain 'Paris'"
    assert failed_check(AcceptConfig(contains="Paris"), answer("Paris."), None) is None
    assert failed_check(AcceptConfig(regex=r"^\d+$"), answer("42"), None) is None
    assert failed_check(AcceptConfig(regex=r"^\d+$"), answer("about 42"), None) is not None
    assert failed_check(AcceptConfig(json_schema=True), answer('{"a": 1}'), None) is None
    assert str(failed_check(AcceptConfig(json_schema=True), answer("{'a': 1"), None)).startswith(
        "schema: not valid JSON"
    )
    confident, unsure = answer("yes", [-0.01, -0.05]), answer("yes", [-2.0, -1.0])
    assert mean_logprob(confident) == pytest.approx(-0.03)
    assert failed_check(AcceptConfig(min_logprob=-0.5), confident, None) is None
    assert failed_check(AcceptConfig(min_logprob=-0.5), unsure, None) == "mean logprob -1.500 < -0.5"
    assert failed_check(AcceptConfig(min_logprob=-0.5), answer("yes"), None) is None  # none returned: passes


def test_judge_replies_are_parsed_robustly() -> None:
    assert parse_score('{"score": 0.8, "reason": "ok"}') == 0.8
    assert parse_score('Sure! ```json\n{"score": 7}\n```') == 0.7  # a 0-10 scale
    assert parse_score("{'score': 0.4,") == 0.4  # broken JSON, repaired
    assert parse_score("I cannot grade this.") is None
    assert parse_score('{"score": "high"}') is None and parse_score('{"score": 42}') is None
    a_wins = '{"winner": "A", "a_acceptable": true, "b_acceptable": false}'
    assert parse_comparison(a_wins, weak_is_a=True) is not None
    weak_first = parse_comparison(a_wins, weak_is_a=True)
    strong_first = parse_comparison(a_wins, weak_is_a=False)
    assert weak_first is not None and (weak_first.verdict, weak_first.weak_ok, weak_first.strong_ok) == (
        "weak_better",
        True,
        False,
    )
    assert strong_first is not None and (strong_first.verdict, strong_first.weak_ok, strong_first.score) == (
        "weak_worse",
        False,
        0.0,
    )
    assert parse_comparison('{"winner": "tie", "a_acceptable": true, "b_acceptable": true}', True) is not None
    assert parse_comparison('{"winner": "C", "a_acceptable": true, "b_acceptable": true}', True) is None
    assert parse_comparison("no idea", True) is None


CONFIG = """
providers: {up: {kind: openai, base_url: "http://127.0.0.1:9/v1"}}
models: {small: {provider: up}, large: {provider: up}}
tiers: {free: {}, pro: {}}
features:
  reply: {route: ROUTE}
"""


def issues(route: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(CONFIG.replace("ROUTE", route), env={})
    return [str(issue) for issue in info.value.issues]


def test_strategies_name_their_models_without_a_models_list() -> None:
    routes = {
        "{strategy: weighted, split: {large: 10, small: 90}, sticky: tenant}": ["large", "small"],
        "{strategy: learned, router: r.json, weak: small, strong: large}": ["small", "large"],
        "{strategy: rules, rules: [{model: large, tools: true}], default: small}": ["large", "small"],
    }
    for route, models in routes.items():
        config = parse_config(CONFIG.replace("ROUTE", route), env={})
        assert config.features["reply"].route.models == models


def test_bad_routes_give_clear_errors_with_paths() -> None:
    assert issues("{strategy: weighted, split: {small: 90, gpt-5x: 5}}") == [
        "features.reply.route: `split` percentages sum to 95, not 100"
    ]
    assert issues("{strategy: weighted, split: {small: 90, gpt-5x: 10}}") == [
        "features.reply.route.split.gpt-5x: unknown model 'gpt-5x' (known: large, small)"
    ]
    assert issues("{strategy: rules, rules: [{model: large, tier: [gold]}], default: small}") == [
        "features.reply.route.rules[0].tier: unknown tier 'gold' (known: free, pro)"
    ]
    assert issues("{strategy: weighted, models: [small]}") == [
        "features.reply.route: strategy 'weighted' needs `split`"
    ]
    judge = issues("{strategy: cascade, models: [small, large], accept: {regex: '(', judge: {model: nope}}}")
    assert judge[0].startswith("features.reply.route.accept.regex: not a valid regular expression")
    assert issues("{strategy: cascade, models: [small, large], accept: {judge: {model: nope}}}") == [
        "features.reply.route.accept.judge.model: unknown model 'nope' (known: large, small)"
    ]
    assert issues("{strategy: learned, router: r.json, weak: small, strong: large, models: [small]}") == [
        "features.reply.route.strong: 'large' is not one of the route's models (features.reply.route.models)"
    ]


def test_a_missing_router_file_fails_config_check(tmp_path: Path) -> None:
    path = tmp_path / "modelplane.yaml"
    path.write_text(CONFIG.replace("ROUTE", "{strategy: learned, router: routers/r.json, weak: small, strong: large}"))
    with pytest.raises(ConfigError) as info:
        load_config(path, home=tmp_path, env={})
    assert [str(i) for i in info.value.issues] == [
        f"features.reply.route.router: router file not found: {tmp_path / 'routers/r.json'}"
    ]
