"""Per-tier routes through the pipeline: the free tier on the small model, pro on the large one;
calls priced at the price in effect, from config or the shipped table."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import orjson
import pytest

from fakes import FakeProvider, in_process_gateway, server_error
from modelplane.ledger.store import LedgerStore
from modelplane.serving import pipeline
from modelplane.serving.auth import hash_key
from modelplane.serving.gateway import Gateway
from modelplane.serving.state import Inbound

CONFIG = f"""
providers:
  up: {{kind: openai, base_url: "http://127.0.0.1:9/v1"}}
models:
  small: {{provider: up, name: gpt-4o-mini-2024-07-18}}  # priced from the shipped table
  large:
    provider: up
    name: gpt-large
    price: [{{input: 2, output: 8}}, {{effective: 2999-01-01, input: 100, output: 100}}]
  backup: {{provider: up, name: gpt-backup, price: {{input: 0, output: 0}}}}
tiers:
  free: {{revenue_per_serving: 0}}
  pro: {{monthly_price: 20, expected_servings_per_month: 400}}
features:
  reply: {{route: {{models: [large], fallback: [backup], tiers: {{free: [small]}}}}}}
resilience: {{retry: {{attempts: 1}}}}
keys:
  - {{hash: "{hash_key("free-key")}", tenant: acme, tier: free}}
  - {{hash: "{hash_key("pro-key")}", tenant: globex, tier: pro}}
"""
BODY = orjson.dumps({"model": "reply", "messages": [{"role": "user", "content": "hi"}]})


@pytest.fixture
def fake() -> FakeProvider:
    return FakeProvider("up")


@pytest.fixture
async def gateway(tmp_path: Path, fake: FakeProvider) -> AsyncIterator[Gateway]:
    gw = await in_process_gateway(CONFIG, tmp_path, {"up": fake})
    yield gw
    await gw.close()


async def ledger_calls(gateway: Gateway, tmp_path: Path) -> dict[str, list[dict[str, object]]]:
    """Each tier's calls, in the order they were made."""
    await gateway.recorder.writer.close()
    store = LedgerStore.from_url(f"sqlite:///{tmp_path}/l.db")
    try:
        calls: dict[str, list[dict[str, object]]] = {}
        for serving in sorted(await store.servings(), key=lambda row: str(row["id"])):
            calls.setdefault(str(serving["tier"]), []).extend(await store.calls_for(str(serving["id"])))
        return calls
    finally:
        await store.close()


async def test_free_tier_lands_on_the_small_model_pro_on_the_large(
    gateway: Gateway, fake: FakeProvider, tmp_path: Path
) -> None:
    free = await pipeline.chat(gateway, Inbound(BODY, "Bearer free-key"))
    pro = await pipeline.chat(gateway, Inbound(BODY, "Bearer pro-key"))
    assert [r.model for r in fake.requests] == ["gpt-4o-mini-2024-07-18", "gpt-large"]
    assert free.headers["x-modelplane-model"] == "small" and pro.headers["x-modelplane-model"] == "large"
    # The fake's usage: 100 input of which 40 cached, 20 output.
    small_cost = (60 * 0.15 + 40 * 0.075 + 20 * 0.60) / 1e6  # the table's gpt-4o-mini list price
    large_cost = (100 * 2 + 20 * 8) / 1e6  # the config price in effect now, not the one of 2999
    assert float(free.headers["x-modelplane-cost-usd"]) == pytest.approx(small_cost)
    assert float(pro.headers["x-modelplane-cost-usd"]) == pytest.approx(large_cost)
    calls = await ledger_calls(gateway, tmp_path)
    assert [c["model"] for c in calls["free"]] == ["small"]
    assert [c["model"] for c in calls["pro"]] == ["large"]
    assert calls["free"][0]["cost_usd"] == pytest.approx(small_cost)


async def test_a_tier_chain_falls_back_to_the_route_fallback_never_to_the_other_tiers_model(
    gateway: Gateway, fake: FakeProvider, tmp_path: Path
) -> None:
    fake.script(server_error())
    outcome = await pipeline.chat(gateway, Inbound(BODY, "Bearer free-key"))
    assert outcome.headers["x-modelplane-model"] == "backup"
    assert [r.model for r in fake.requests] == ["gpt-4o-mini-2024-07-18", "gpt-backup"]
    calls = await ledger_calls(gateway, tmp_path)
    assert [(c["model"], c["status"]) for c in calls["free"]] == [("small", "error"), ("backup", "ok")]
