"""The response cache wired into the gateway: restarts, streams, the ledger's reasons, configured embedders."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from fakes import FakeProvider, Reply, in_process_gateway
from modelplane.config.load import parse_config
from modelplane.errors import ConfigError
from modelplane.ledger.store import LedgerStore
from modelplane.serving import pipeline
from modelplane.serving.gateway import Gateway
from modelplane.serving.state import Inbound
from upstream import ScriptedUpstream

CONFIG = """
providers: {up: {kind: openai, base_url: "http://127.0.0.1:9/v1"}}
models: {small: {provider: up, name: gpt-small, price: {input: 1.0, output: 4.0}}}
features:
  faq:
    route: {models: [small]}
    cache: {exact: true, semantic: {threshold: 0.8}}
  plain: {route: {models: [small]}}
resilience: {retry: {attempts: 1}}
"""


def ask(question: str = "How do I reset my password?", feature: str = "faq", **extra: Any) -> Inbound:
    body = {"model": feature, "messages": [{"role": "user", "content": question}], "temperature": 0, **extra}
    return Inbound(orjson.dumps(body))


async def drain(outcome: pipeline.respond.Outcome) -> bytes:
    assert outcome.chunks is not None
    return b"".join([chunk async for chunk in outcome.chunks])


async def ledger_rows(gateway: Gateway, tmp_path: Path) -> list[dict[str, Any]]:
    await gateway.close()
    store = LedgerStore.from_url(f"sqlite:///{tmp_path}/l.db")
    rows = await store.servings()
    await store.close()
    return sorted(rows, key=lambda row: row["ts"])


async def test_entries_survive_a_gateway_restart(tmp_path: Path) -> None:
    fake = FakeProvider("up")
    gateway = await in_process_gateway(CONFIG, tmp_path, {"up": fake})
    assert gateway.cache.backend == "sqlite"  # the embedded default
    await pipeline.chat(gateway, ask())
    await gateway.close()
    assert (tmp_path / "cache.db").exists()

    restarted = await in_process_gateway(CONFIG, tmp_path, {"up": fake})
    try:
        exact = await pipeline.chat(restarted, ask())
        paraphrase = await pipeline.chat(restarted, ask("How can I reset my password?"))
    finally:
        await restarted.close()
    assert (exact.headers["x-modelplane-cache"], paraphrase.headers["x-modelplane-cache"]) == ("exact", "semantic")
    assert len(fake.requests) == 1


async def test_the_memory_backend_forgets_on_restart(tmp_path: Path) -> None:
    fake, config = FakeProvider("up"), CONFIG + "cache: {backend: memory}\n"
    for _ in range(2):
        gateway = await in_process_gateway(config, tmp_path, {"up": fake})
        outcome = await pipeline.chat(gateway, ask())
        await gateway.close()
        assert outcome.headers["x-modelplane-cache"] == "miss"
    assert len(fake.requests) == 2 and not (tmp_path / "cache.db").exists()


async def test_a_streamed_answer_is_stored_once_complete(tmp_path: Path) -> None:
    fake = FakeProvider("up")
    gateway = await in_process_gateway(CONFIG, tmp_path, {"up": fake})
    try:
        streamed = await drain(await pipeline.chat(gateway, ask(stream=True)))
        assert b"[DONE]" in streamed
        again = await pipeline.chat(gateway, ask())
        assert again.headers["x-modelplane-cache"] == "exact" and again.body is not None
        body = orjson.loads(again.body)
        assert body["object"] == "chat.completion"
        assert body["choices"][0]["message"]["content"] == "Hello from the fake."
        assert body["choices"][0]["finish_reason"] == "stop"
        replayed = await drain(await pipeline.chat(gateway, ask(stream=True)))  # a hit streams back as SSE
        assert b"Hello from the fake." in replayed and replayed.rstrip().endswith(b"data: [DONE]")
    finally:
        await gateway.close()
    assert len(fake.requests) == 1


async def test_a_cut_stream_is_never_stored(tmp_path: Path) -> None:
    fake = FakeProvider("up", [Reply(cut_after=2)])
    gateway = await in_process_gateway(CONFIG, tmp_path, {"up": fake})
    try:
        cut = await drain(await pipeline.chat(gateway, ask(stream=True)))
        assert b'"error"' in cut
        again = await pipeline.chat(gateway, ask())
    finally:
        await gateway.close()
    assert again.headers["x-modelplane-cache"] == "miss" and len(fake.requests) == 2


async def test_the_ledger_says_why_the_cache_answered_or_not(tmp_path: Path) -> None:
    fake = FakeProvider("up")
    gateway = await in_process_gateway(CONFIG, tmp_path, {"up": fake})
    questions = [
        ask(),  # the partition is empty
        ask(),  # the same question
        ask("How can I reset my password?"),  # a paraphrase
        ask("How do I not reset my password?"),  # a negation
        ask("What is the weather on Mars today?"),  # unrelated
        ask(temperature=0.5),  # under `when: deterministic`, not cached
        ask(feature="plain"),  # no cache at all
    ]
    for inbound in questions:
        await pipeline.chat(gateway, inbound)
    rows = await ledger_rows(gateway, tmp_path)
    reasons = [row["cache_reason"] for row in rows]
    assert reasons == [
        "no_entries",
        "exact",
        "semantic",
        "guard:negation",
        "below_threshold",
        "not_cacheable",
        None,
    ]
    assert rows[2]["cache_score"] >= 0.8 and rows[4]["cache_score"] < 0.8


async def test_a_configured_models_embeddings_drive_the_semantic_cache(tmp_path: Path) -> None:
    async with ScriptedUpstream() as up:
        config = f"""
providers: {{up: {{kind: openai, base_url: "{up.base_url}"}}}}
models:
  small: {{provider: up, price: {{input: 1, output: 1}}}}
  emb: {{provider: up, name: scripted-embed, price: {{input: 0.02, output: 0}}}}
features:
  faq: {{route: {{models: [small]}}, cache: {{exact: false, semantic: {{threshold: 0.99}}}}}}
cache: {{embedder: "model:emb", backend: memory}}
"""
        gateway = await in_process_gateway(config, tmp_path, {})
        try:
            first = await pipeline.chat(gateway, ask("What are your opening hours?"))
            second = await pipeline.chat(gateway, ask("What are your opening hours?"))
        finally:
            await gateway.close()
        embeddings = [r for r in up.requests if r.path.endswith("/embeddings")]
    assert (first.headers["x-modelplane-cache"], second.headers["x-modelplane-cache"]) == ("miss", "semantic")
    assert up.count() == 1 and len(embeddings) == 2
    assert embeddings[0].json == {"input": ["What are your opening hours?"], "model": "scripted-embed"}


async def test_an_embedder_that_fails_is_a_miss_not_a_failed_request(tmp_path: Path) -> None:
    async with ScriptedUpstream() as up:
        config = f"""
providers: {{up: {{kind: openai, base_url: "{up.base_url}"}}, gone: {{kind: openai, base_url: "http://127.0.0.1:9/v1"}}}}
models:
  small: {{provider: up, price: {{input: 1, output: 1}}}}
  emb: {{provider: gone, price: {{input: 0.02, output: 0}}}}
features:
  faq: {{route: {{models: [small]}}, cache: {{exact: false, semantic: {{}}}}}}
cache: {{embedder: "model:emb", backend: memory}}
"""
        gateway = await in_process_gateway(config, tmp_path, {})
        outcome = await pipeline.chat(gateway, ask())
        rows = await ledger_rows(gateway, tmp_path)
    assert outcome.status == 200 and outcome.headers["x-modelplane-cache"] == "miss"
    assert rows[0]["cache_reason"] == "embedder_failed"


@pytest.mark.parametrize(
    ("cache", "message"),
    [
        ("{backend: redis}", "cache.backend: the redis backend needs a `redis:` section"),
        ("{embedder: glove}", "cache.embedder: unknown embedder 'glove'"),
        ("{embedder: 'wordllama:100'}", "cache.embedder: wordllama dim must be one of 64, 128, 256"),
        ("{embedder: 'model:nope'}", "cache.embedder: unknown model 'nope'"),
        ("{embedder: 'model:local'}", "cache.embedder: model 'local' is on a 'llamacpp' provider"),
        ("{backend: disk}", "cache.backend"),
    ],
)
def test_cache_settings_are_checked_with_their_path(cache: str, message: str) -> None:
    text = (
        CONFIG.replace("providers: {", "providers: {local: {kind: llamacpp, model: 'bundled:gemma-3-270m'}, ").replace(
            "models: {", "models: {local: {provider: local, price: {input: 0, output: 0}}, "
        )
        + f"cache: {cache}\n"
    )
    with pytest.raises(ConfigError) as caught:
        parse_config(text, env={})
    assert any(str(issue).startswith(message) for issue in caught.value.issues), caught.value.issues


def test_sentence_transformers_without_the_extra_names_it() -> None:
    pytest.importorskip("numpy")
    try:
        import sentence_transformers  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("the st extra is installed here")
    with pytest.raises(ConfigError) as caught:
        parse_config(CONFIG + "cache: {embedder: 'sentence-transformers:all-MiniLM-L6-v2'}\n", env={})
    assert "pip install 'modelplane[st]'" in str(caught.value)
