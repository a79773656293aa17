"""Routing strategies through the pipeline, with an in-process provider that answers per model:
weighted (sticky), rules, cascades that escalate exactly when a check fails, a learned router
(a stand-in), the audit in the ledger, and shadow judging down to the report's regret and savings."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest

from fakes import in_process_gateway
from modelplane.economics.report import build_report
from modelplane.errors import ConfigError, ErrorClass, ProviderError
from modelplane.ledger.queries import ReportFilter
from modelplane.ledger.store import LedgerStore
from modelplane.providers.base import Answer, ChatRequest, Provider, Stream, Usage
from modelplane.routing.shadow import judged_pairs, judged_rows, shadow_rows, write_pairs
from modelplane.routing.strategies import Learned
from modelplane.serving import pipeline
from modelplane.serving.auth import hash_key
from modelplane.serving.gateway import Gateway
from modelplane.serving.state import Inbound

Responder = Callable[[ChatRequest], str]


class ByModel(Provider):
    """Answers each upstream model with its own function of the request; records every request."""

    kind = "openai"

    def __init__(self, name: str, responders: dict[str, Responder]) -> None:
        super().__init__(name)
        self.responders = responders
        self.requests: list[ChatRequest] = []

    async def chat(self, request: ChatRequest) -> Answer | Stream:
        self.requests.append(request)
        content = self.responders[request.model](request)
        if content == "<500>":
            raise ProviderError(ErrorClass.SERVER_ERROR, "upstream answered 500", status=500)
        usage = Usage(input_tokens=1000, output_tokens=100)
        message = {"role": "assistant", "content": content}
        body = {"id": "x", "object": "chat.completion", "created": 0, "model": request.model,
                "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 1000, "completion_tokens": 100}}  # fmt: skip
        return Answer(body, usage, request.model)

    @property
    def models(self) -> list[str]:
        return [r.model for r in self.requests]


def user_text(request: ChatRequest) -> str:
    return str(request.body["messages"][-1]["content"])


def judge_prefers_strong(request: ChatRequest) -> str:
    """Compares: the answer that says 'strong' wins; scores: 0.2 for 'maybe', else 0.9."""
    text = user_text(request)
    if "Answer A:" in text:
        a = text.split("Answer A:")[1].split("Answer B:")[0]
        winner = "A" if "strong" in a else "B"
        return orjson.dumps({"winner": winner, "a_acceptable": winner == "A", "b_acceptable": winner == "B"}).decode()
    return '{"score": 0.2}' if "maybe" in text else '{"score": 0.9}'


CONFIG = f"""
providers:
  up: {{kind: openai, base_url: "http://127.0.0.1:9/v1"}}
models:
  small: {{provider: up, name: up-small, price: {{input: 1, output: 2}}}}
  large: {{provider: up, name: up-large, price: {{input: 10, output: 20}}}}
  judge: {{provider: up, name: up-judge, price: {{input: 5, output: 5}}}}
tiers: {{free: {{}}, pro: {{}}}}
features:
  split: {{route: {{strategy: weighted, split: {{small: 50, large: 50}}, sticky: tenant}}}}
  ruled:
    route:
      strategy: rules
      rules: [{{model: large, tools: true}}, {{model: large, metadata: {{plan: vip}}}}, {{model: small, tier: [free]}}]
      default: large
  checked:
    route: {{strategy: cascade, models: [small, large], accept: {{contains: OK}}, deterministic_fallback: sorry}}
  judged:
    route: {{strategy: cascade, models: [small, large], accept: {{judge: {{model: judge, min: 0.5}}}}}}
  confident:
    route: {{strategy: cascade, models: [small, large], accept: {{min_logprob: -0.5}}}}
  learned: {{route: {{models: [small, large]}}}}
  shadowed:
    route:
      strategy: cascade
      models: [small, large]
      shadow: {{sample: 1.0, judge: judge}}
resilience: {{retry: {{attempts: 1}}}}
keys:
  - {{hash: "{hash_key("free-key")}", tenant: acme, tier: free}}
  - {{hash: "{hash_key("pro-key")}", tenant: globex, tier: pro}}
"""


@pytest.fixture
def upstream() -> ByModel:
    return ByModel(
        "up",
        {
            "up-small": lambda r: "maybe" if "hard" in user_text(r) else "OK small",
            "up-large": lambda r: "OK strong answer",
            "up-judge": judge_prefers_strong,
        },
    )


@pytest.fixture
async def gateway(tmp_path: Path, upstream: ByModel) -> AsyncIterator[Gateway]:
    gw = await in_process_gateway(CONFIG, tmp_path, {"up": upstream})
    yield gw
    await gw.close()


def body(feature: str, text: str = "hi", **extra: Any) -> bytes:
    return orjson.dumps({"model": feature, "messages": [{"role": "user", "content": text}], **extra})


async def ledger(gateway: Gateway, tmp_path: Path) -> tuple[LedgerStore, list[dict[str, Any]]]:
    """Let shadows finish, drain the writer and open the ledger: (store, servings oldest first)."""
    await gateway.shadows.close()
    await gateway.recorder.writer.close()
    store = LedgerStore.from_url(f"sqlite:///{tmp_path}/l.db")
    await store.open()
    return store, sorted(await store.servings(1000), key=lambda row: str(row["id"]))


async def test_a_weighted_split_is_sticky_per_tenant_and_audited(
    gateway: Gateway, upstream: ByModel, tmp_path: Path
) -> None:
    for _ in range(10):
        await pipeline.chat(gateway, Inbound(body("split"), "Bearer free-key"))
        await pipeline.chat(gateway, Inbound(body("split"), "Bearer pro-key"))
    acme, globex = set(upstream.models[0::2]), set(upstream.models[1::2])
    assert len(acme) == 1 and len(globex) == 1
    store, rows = await ledger(gateway, tmp_path)
    await store.close()
    for row in rows:
        assert row["route_strategy"] == "weighted" and row["route_candidates"] == "small,large"
        assert row["route_model"] == row["model"] and 0 <= row["route_score"] < 100
        assert row["route_reason"].startswith("sticky tenant")


async def test_rules_pick_by_tools_metadata_and_tier(gateway: Gateway, upstream: ByModel, tmp_path: Path) -> None:
    tools = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]
    await pipeline.chat(gateway, Inbound(body("ruled", tools=tools), "Bearer free-key"))
    await pipeline.chat(gateway, Inbound(body("ruled", metadata={"plan": "vip"}), "Bearer free-key"))
    await pipeline.chat(gateway, Inbound(body("ruled"), "Bearer free-key"))
    await pipeline.chat(gateway, Inbound(body("ruled"), "Bearer pro-key"))
    assert upstream.models == ["up-large", "up-large", "up-small", "up-large"]
    store, rows = await ledger(gateway, tmp_path)
    await store.close()
    assert [r["route_reason"] for r in rows] == ["rules[0]", "rules[1]", "rules[2]", "default"]


async def test_a_cascade_escalates_exactly_when_its_check_fails(
    gateway: Gateway, upstream: ByModel, tmp_path: Path
) -> None:
    easy = await pipeline.chat(gateway, Inbound(body("checked", "easy"), "Bearer pro-key"))
    hard = await pipeline.chat(gateway, Inbound(body("checked", "hard"), "Bearer pro-key"))
    assert easy.headers["x-modelplane-model"] == "small" and hard.headers["x-modelplane-model"] == "large"
    assert upstream.models == ["up-small", "up-small", "up-large"]
    store, rows = await ledger(gateway, tmp_path)
    try:
        calls = [[c["model"] for c in await store.calls_for(str(r["id"]))] for r in rows]
    finally:
        await store.close()
    assert calls == [["small"], ["small", "large"]]  # both steps are calls of the one serving
    assert rows[0]["route_reason"] == "cheapest first"
    assert rows[1]["route_reason"] == "cheapest first; small: does not contain 'OK'; escalated"
    assert rows[1]["cost_usd"] == pytest.approx((1000 * 1 + 100 * 2 + 1000 * 10 + 100 * 20) / 1e6)
    # An escalation is not a fallback: the report tells them apart by these two columns.
    assert [(r["fallback_depth"], r["cascade_escalations"]) for r in rows] == [(0, 0), (1, 1)]


async def test_a_judged_cascade_records_the_judge_call_in_the_serving(
    gateway: Gateway, upstream: ByModel, tmp_path: Path
) -> None:
    good = await pipeline.chat(gateway, Inbound(body("judged", "easy"), "Bearer pro-key"))
    bad = await pipeline.chat(gateway, Inbound(body("judged", "hard"), "Bearer pro-key"))
    assert good.headers["x-modelplane-model"] == "small" and bad.headers["x-modelplane-model"] == "large"
    assert upstream.models == ["up-small", "up-judge", "up-small", "up-judge", "up-large"]
    store, rows = await ledger(gateway, tmp_path)
    try:
        calls = [[(c["model"], c["purpose"]) for c in await store.calls_for(str(r["id"]))] for r in rows]
    finally:
        await store.close()
    assert calls[1] == [("small", "answer"), ("judge", "judge"), ("large", "answer")]
    assert rows[0]["model"] == "small" and rows[1]["model"] == "large"
    assert "judge score 0.20 < 0.5" in rows[1]["route_reason"]


async def test_when_the_stronger_model_fails_the_rejected_answer_beats_the_fallback(
    gateway: Gateway, upstream: ByModel, tmp_path: Path
) -> None:
    upstream.responders["up-large"] = lambda r: "<500>"
    outcome = await pipeline.chat(gateway, Inbound(body("checked", "hard"), "Bearer pro-key"))
    assert outcome.headers["x-modelplane-model"] == "small"
    assert orjson.loads(outcome.body or b"")["choices"][0]["message"]["content"] == "maybe"
    store, rows = await ledger(gateway, tmp_path)
    await store.close()
    # The served answer is the first step's: no escalation before it, no fallback to it.
    assert [(r["fallback_depth"], r["cascade_escalations"]) for r in rows] == [(0, 0)]


async def test_a_logprob_cascade_asks_for_logprobs_and_hides_them_from_the_client(
    gateway: Gateway, upstream: ByModel
) -> None:
    outcome = await pipeline.chat(gateway, Inbound(body("confident", "easy"), "Bearer pro-key"))
    assert upstream.requests[0].body["logprobs"] is True
    assert outcome.headers["x-modelplane-model"] == "small"  # no logprobs came back: the check passes


class LengthRouter:
    """A stand-in for a trained router: long prompts need the strong model."""

    version = "stand-in"
    embedder = "wordllama/l2_supercat-256"

    def score(self, text: str, vector: np.ndarray) -> float:
        assert vector.shape == (256,) and abs(float(np.linalg.norm(vector)) - 1) < 1e-3
        return min(1.0, len(text) / 100)

    def threshold_for_share(self, strong_share: float) -> float:
        return 1 - strong_share


async def test_a_learned_route_sends_easy_prompts_to_the_weak_model(
    gateway: Gateway, upstream: ByModel, tmp_path: Path
) -> None:
    gateway.runtime.strategies["learned"] = Learned(LengthRouter(), "small", "large", 0.5)
    await pipeline.chat(gateway, Inbound(body("learned", "short question"), "Bearer pro-key"))
    await pipeline.chat(gateway, Inbound(body("learned", "a long question " * 10), "Bearer pro-key"))
    assert upstream.models == ["up-small", "up-large"]
    store, rows = await ledger(gateway, tmp_path)
    await store.close()
    assert [(r["route_strategy"], r["route_threshold"], r["route_reason"]) for r in rows] == [
        ("learned", 0.5, "router stand-in"),
        ("learned", 0.5, "router stand-in"),
    ]
    assert rows[0]["route_score"] == pytest.approx(0.14) and rows[1]["route_score"] == 1.0


async def test_single_routes_are_audited_too(gateway: Gateway, tmp_path: Path) -> None:
    await pipeline.chat(gateway, Inbound(body("learned"), "Bearer pro-key"))
    store, rows = await ledger(gateway, tmp_path)
    await store.close()
    assert (rows[0]["route_strategy"], rows[0]["route_model"], rows[0]["route_candidates"]) == (
        "single",
        "small",
        "small,large",
    )


async def test_shadow_judging_measures_regret_and_savings(gateway: Gateway, upstream: ByModel, tmp_path: Path) -> None:
    for text in ("one", "two", "three"):
        outcome = await pipeline.chat(gateway, Inbound(body("shadowed", text), "Bearer pro-key"))
        assert outcome.headers["x-modelplane-model"] == "small"
    store, rows = await ledger(gateway, tmp_path)
    try:
        shadows = await shadow_rows(store)
        report = await build_report(store, gateway.runtime.loaded.config, ReportFilter())
        pairs = await judged_pairs(store, "shadowed")
        judged = await judged_rows(store)
    finally:
        await store.close()
    assert [r["group"] for r in judged] == ["shadowed"] * 3  # the trainer cross-fits across features
    assert len(shadows) == 3 and {s["verdict"] for s in shadows} == {"weak_worse"}
    small, large = (1000 * 1 + 100 * 2) / 1e6, (1000 * 10 + 100 * 20) / 1e6
    assert shadows[0]["weak_cost"] == pytest.approx(small) and shadows[0]["strong_cost"] == pytest.approx(large)
    assert [r["operation"] for r in rows].count("shadow") == 3  # the shadow calls: requests of the same servings
    feature = next(f for f in report.features if f.feature == "shadowed")
    assert feature.servings == 3  # not 6: shadow requests belong to their servings
    assert feature.cost_per_serving_usd.mean == pytest.approx(small + large + (1000 * 5 + 100 * 5) / 1e6)
    routing = next(r for r in report.routing if r.feature == "shadowed")
    assert routing.share == {"small": 1.0} and routing.judged == 3 and routing.regret == 1.0
    assert routing.saved_usd == pytest.approx(3 * (large - small))
    assert pairs == [("one", False, True), ("two", False, True), ("three", False, True)]
    write_pairs(pairs, tmp_path / "pairs.csv")
    assert (tmp_path / "pairs.csv").read_text().splitlines()[:2] == ["prompt,weak_ok,strong_ok", "one,False,True"]
    assert re.search(
        r"shadow of [0-9a-f]{24}", str(next(r for r in rows if r["operation"] == "shadow")["route_reason"])
    )


def write_router(path: Path) -> None:
    """A real router file whose only signal is the prompt's length (log of its characters)."""
    from modelplane.embeddings.base import EmbedderSpec
    from modelplane.routing.learned import TEXT_FEATURES, LearnedRouter

    width = 256 + len(TEXT_FEATURES)
    weights = np.zeros(width)
    weights[256] = -1.0  # log_chars: the longer the prompt, the harder (the lower its ease index)
    router = LearnedRouter(
        embedder="wordllama/l2_supercat-256",
        embedder_spec=EmbedderSpec("wordllama"),
        dim=256,
        mean=np.zeros(width),
        scale=np.ones(width),
        weights=weights,
        intercepts=np.array([1.0, 0.0]),
        levels=np.linspace(-6, 0, 11),  # ease indices from log_chars 6 (hardest) to 0
        curve=np.linspace(1, -1, 201),  # the strong model gains on the hardest, loses on the easiest
        quantiles=np.linspace(0, 1, 11),
    )
    router.save(path)


async def test_a_router_file_from_config_routes_by_its_score(tmp_path: Path, upstream: ByModel) -> None:
    write_router(tmp_path / "router.json")
    route = f"{{strategy: learned, router: {tmp_path / 'router.json'}, weak: small, strong: large, threshold: 0.5}}"
    config = CONFIG.replace("{route: {models: [small, large]}}", f"{{route: {route}}}")
    gw = await in_process_gateway(config, tmp_path, {"up": upstream})
    try:
        await pipeline.chat(gw, Inbound(body("learned", "hi"), "Bearer pro-key"))
        await pipeline.chat(gw, Inbound(body("learned", "explain this at length " * 8), "Bearer pro-key"))
        assert upstream.models == ["up-small", "up-large"]
        store, rows = await ledger(gw, tmp_path)
        await store.close()
    finally:
        await gw.close()
    assert rows[0]["route_score"] < 0.5 <= rows[1]["route_score"]
    assert str(rows[0]["route_reason"]).startswith("router ")


async def test_a_bad_router_file_is_a_config_error_naming_the_route(tmp_path: Path, upstream: ByModel) -> None:
    (tmp_path / "router.json").write_text("{}")
    route = f"{{strategy: learned, router: {tmp_path / 'router.json'}, weak: small, strong: large}}"
    config = CONFIG.replace("{route: {models: [small, large]}}", f"{{route: {route}}}")
    with pytest.raises(ConfigError) as info:
        await in_process_gateway(config, tmp_path, {"up": upstream})
    assert [i.path for i in info.value.issues] == ["features.learned.route.router"]
    assert "not a router file" in info.value.issues[0].message
