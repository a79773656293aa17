"""The cache stage through the pipeline: a repeat costs nothing, and no tenant sees another's entry."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from fakes import FakeProvider, in_process_gateway, server_error
from modelplane.ledger.store import LedgerStore
from modelplane.serving import pipeline
from modelplane.serving.auth import hash_key
from modelplane.serving.gateway import Gateway
from modelplane.serving.state import Inbound

CONFIG = f"""
providers: {{up: {{kind: openai, base_url: "http://127.0.0.1:9/v1"}}}}
models: {{small: {{provider: up, name: gpt-small, price: {{input: 1.0, output: 4.0}}}}}}
features:
  exact: {{route: {{models: [small]}}, cache: {{exact: true}}}}
  always: {{route: {{models: [small]}}, cache: {{exact: true, when: always}}}}
  meaning:
    route: {{models: [small], deterministic_fallback: "later"}}
    cache: {{exact: false, semantic: {{threshold: 0.8}}}}
  nocache: {{route: {{models: [small]}}}}
resilience: {{retry: {{attempts: 1}}}}
keys:
  - {{hash: "{hash_key("acme-key")}", tenant: acme, tier: default}}
  - {{hash: "{hash_key("globex-key")}", tenant: globex, tier: default}}
"""
ACME, GLOBEX = "Bearer acme-key", "Bearer globex-key"


@pytest.fixture
def fake() -> FakeProvider:
    return FakeProvider("up")


@pytest.fixture
async def gateway(tmp_path: Path, fake: FakeProvider) -> AsyncIterator[Gateway]:
    gw = await in_process_gateway(CONFIG, tmp_path, {"up": fake})
    yield gw
    await gw.close()


def ask(feature: str, question: str = "What is the capital of France?", key: str = ACME, **extra: Any) -> Inbound:
    body = {"model": feature, "messages": [{"role": "user", "content": question}], "temperature": 0, **extra}
    return Inbound(orjson.dumps(body), key)


async def test_an_exact_repeat_costs_nothing_and_says_so(gateway: Gateway, fake: FakeProvider, tmp_path: Path) -> None:
    first = await pipeline.chat(gateway, ask("exact"))
    second = await pipeline.chat(gateway, ask("exact"))
    assert len(fake.requests) == 1
    assert (first.headers["x-modelplane-cache"], second.headers["x-modelplane-cache"]) == ("miss", "exact")
    assert (
        second.body is not None
        and orjson.loads(second.body)["choices"][0]["message"]["content"] == "Hello from the fake."
    )
    cost = float(first.headers["x-modelplane-cost-usd"])
    assert cost > 0 and float(second.headers["x-modelplane-cost-usd"]) == 0.0
    await gateway.recorder.writer.close()
    store = LedgerStore.from_url(f"sqlite:///{tmp_path}/l.db")
    rows = {r["cache"]: r for r in await store.servings()}
    await store.close()
    assert rows["exact"]["cost_usd"] == 0.0 and rows["exact"]["saved_usd"] == pytest.approx(cost)
    assert rows["miss"]["saved_usd"] is None


async def test_a_tenant_never_hits_another_tenants_entry(gateway: Gateway, fake: FakeProvider) -> None:
    await pipeline.chat(gateway, ask("exact"))
    other = await pipeline.chat(gateway, ask("exact", key=GLOBEX))
    assert other.headers["x-modelplane-cache"] == "miss" and len(fake.requests) == 2
    await pipeline.chat(gateway, ask("meaning"))
    other = await pipeline.chat(gateway, ask("meaning", key=GLOBEX))
    assert other.headers["x-modelplane-cache"] == "miss" and len(fake.requests) == 4


@pytest.mark.parametrize(
    "change",
    [
        {"temperature": 0.7},
        {"tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]},
        {
            "messages": [
                {"role": "system", "content": "Be terse."},
                {"role": "user", "content": "What is the capital of France?"},
            ]
        },
        {"max_tokens": 5},
    ],
)
async def test_anything_that_changes_the_answer_misses(
    gateway: Gateway, fake: FakeProvider, change: dict[str, Any]
) -> None:
    await pipeline.chat(gateway, ask("always"))
    changed = await pipeline.chat(gateway, ask("always", **change))
    assert changed.headers["x-modelplane-cache"] == "miss" and len(fake.requests) == 2


async def test_only_deterministic_requests_are_cached_by_default(gateway: Gateway, fake: FakeProvider) -> None:
    for _ in range(2):
        outcome = await pipeline.chat(gateway, ask("exact", temperature=0.7))
    assert outcome.headers["x-modelplane-cache"] == "miss" and len(fake.requests) == 2


async def test_a_paraphrase_hits_by_meaning_and_a_negation_does_not(gateway: Gateway, fake: FakeProvider) -> None:
    await pipeline.chat(gateway, ask("meaning", "How do I reset my password?"))
    paraphrase = await pipeline.chat(gateway, ask("meaning", "How can I reset my password?"))
    assert paraphrase.headers["x-modelplane-cache"] == "semantic" and len(fake.requests) == 1
    negated = await pipeline.chat(gateway, ask("meaning", "How do I not reset my password?"))
    assert negated.headers["x-modelplane-cache"] == "miss" and len(fake.requests) == 2


async def test_failures_and_deterministic_answers_are_never_cached(gateway: Gateway, fake: FakeProvider) -> None:
    fake.script(server_error())
    first = await pipeline.chat(gateway, ask("meaning"))
    assert first.headers["x-modelplane-model"] == "deterministic"
    second = await pipeline.chat(gateway, ask("meaning"))
    assert second.headers["x-modelplane-cache"] == "miss" and second.headers["x-modelplane-model"] == "small"


async def test_a_hit_streams_back_as_sse(gateway: Gateway, fake: FakeProvider) -> None:
    await pipeline.chat(gateway, ask("exact"))
    outcome = await pipeline.chat(gateway, ask("exact", stream=True))
    assert outcome.headers["x-modelplane-cache"] == "exact" and outcome.chunks is not None
    raw = b"".join([chunk async for chunk in outcome.chunks])
    assert b"Hello from the fake." in raw and raw.rstrip().endswith(b"data: [DONE]")
    assert len(fake.requests) == 1


async def test_purge_by_tenant(gateway: Gateway, fake: FakeProvider) -> None:
    await pipeline.chat(gateway, ask("exact"))
    await pipeline.chat(gateway, ask("exact", key=GLOBEX))
    assert await gateway.cache.purge(tenant="acme") == 1
    again = await pipeline.chat(gateway, ask("exact"))
    kept = await pipeline.chat(gateway, ask("exact", key=GLOBEX))
    assert again.headers["x-modelplane-cache"] == "miss" and kept.headers["x-modelplane-cache"] == "exact"


async def test_no_cache_config_means_no_caching(gateway: Gateway, fake: FakeProvider) -> None:
    for _ in range(2):
        await pipeline.chat(gateway, ask("nocache"))
    assert len(fake.requests) == 2
