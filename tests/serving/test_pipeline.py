"""The pipeline end to end, in process, with the fake provider in place of a real upstream."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import orjson
import pytest

from fakes import FakeProvider, Reply, in_process_gateway, rate_limited
from modelplane.config.load import LoadedConfig, parse_config
from modelplane.errors import Forbidden, NotFound, ProviderError, Unauthorized
from modelplane.ledger.store import LedgerStore
from modelplane.serving import pipeline
from modelplane.serving.auth import hash_key
from modelplane.serving.gateway import Gateway
from modelplane.serving.state import Inbound

CONFIG = f"""
providers:
  up: {{kind: openai, base_url: "http://127.0.0.1:9/v1"}}
  other: {{kind: openai, base_url: "http://127.0.0.1:9/v1"}}
models:
  small: {{provider: up, name: gpt-small, price: {{input: 1.0, cached_input: 0.5, output: 4.0}}}}
  mystery: {{provider: other, name: no-price}}
tiers:
  free: {{revenue_per_serving: 0}}
  pro: {{monthly_price: 20, expected_servings_per_month: 400}}
features:
  reply: {{route: {{strategy: single, models: [small]}}}}
  premium: {{route: {{strategy: single, models: [small]}}, tiers: [pro]}}
  unpriced: {{route: {{strategy: single, models: [mystery]}}}}
resilience: {{retry: {{attempts: 1}}}}  # see test_resilience.py for retries and fallbacks
keys:
  - {{hash: "{hash_key("free-key")}", tenant: acme, tier: free}}
  - {{hash: "{hash_key("pro-key")}", tenant: globex, tier: pro}}
"""
FREE = "Bearer free-key"


@pytest.fixture
def fake() -> FakeProvider:
    return FakeProvider("up")


@pytest.fixture
async def gateway(tmp_path: Path, fake: FakeProvider) -> AsyncIterator[Gateway]:
    gw = await in_process_gateway(CONFIG, tmp_path, {"up": fake, "other": FakeProvider("other")})
    yield gw
    await gw.close()


async def ledger_rows(gateway: Gateway, tmp_path: Path) -> tuple[list[dict[str, object]], LedgerStore]:
    await gateway.recorder.writer.close()
    store = LedgerStore.from_url(f"sqlite:///{tmp_path}/l.db")
    return await store.servings(), store


def chat_body(**extra: object) -> bytes:
    return orjson.dumps({"model": "reply", "messages": [{"role": "user", "content": "hi"}], **extra})


async def test_answer_is_passed_back_with_headers_and_priced(
    gateway: Gateway, fake: FakeProvider, tmp_path: Path
) -> None:
    outcome = await pipeline.chat(gateway, Inbound(chat_body(temperature=0.2), FREE))
    body = orjson.loads(outcome.body or b"")
    assert body["choices"][0]["message"]["content"] == "Hello from the fake."
    assert fake.requests[0].model == "gpt-small"
    assert fake.requests[0].body["temperature"] == 0.2
    # 60 plain input at $1/M, 40 cached at $0.5/M, 20 output at $4/M: cached tokens are not charged twice.
    expected = (60 * 1.0 + 40 * 0.5 + 20 * 4.0) / 1e6
    assert float(outcome.headers["x-modelplane-cost-usd"]) == pytest.approx(expected)
    assert outcome.headers["x-modelplane-model"] == "small"
    assert outcome.headers["x-modelplane-cache"] == "miss"
    assert outcome.headers["x-modelplane-fallback"] == "0"
    rows, store = await ledger_rows(gateway, tmp_path)
    (row,) = rows
    assert row["tenant"] == "acme" and row["tier"] == "free" and row["feature"] == "reply"
    assert row["serving_id"] == outcome.headers["x-modelplane-serving"]
    assert (row["input_tokens"], row["cached_input_tokens"], row["output_tokens"]) == (100, 40, 20)
    assert row["cost_usd"] == pytest.approx(expected)
    assert row["config_version"] == "v-test" and row["status"] == "ok" and row["http_status"] == 200
    (call,) = await store.calls_for(str(row["id"]))
    assert call["model"] == "small" and call["provider"] == "up" and call["status"] == "ok"
    await store.close()


async def test_feature_by_header_and_serving_id_from_client(gateway: Gateway) -> None:
    inbound = Inbound(chat_body(model="whatever-the-sdk-wants"), FREE, feature="reply", serving_id="srv-42")
    outcome = await pipeline.chat(gateway, inbound)
    assert outcome.headers["x-modelplane-serving"] == "srv-42"


@pytest.mark.parametrize(
    ("authorization", "error"),
    [(None, Unauthorized), ("Bearer nope", Unauthorized), ("Basic free-key", Unauthorized)],
)
async def test_bad_keys_are_refused(gateway: Gateway, authorization: str | None, error: type[Exception]) -> None:
    with pytest.raises(error):
        await pipeline.chat(gateway, Inbound(chat_body(), authorization))


async def test_unknown_feature_is_404_and_closed_tier_is_403(gateway: Gateway) -> None:
    with pytest.raises(NotFound, match="unknown feature 'nope'"):
        await pipeline.chat(gateway, Inbound(chat_body(model="nope"), FREE))
    with pytest.raises(Forbidden, match="tier 'free'"):
        await pipeline.chat(gateway, Inbound(chat_body(model="premium"), FREE))
    outcome = await pipeline.chat(gateway, Inbound(chat_body(model="premium"), "Bearer pro-key"))
    assert outcome.status == 200


async def test_unpriced_model_records_null_cost_never_zero(gateway: Gateway, tmp_path: Path) -> None:
    outcome = await pipeline.chat(gateway, Inbound(chat_body(model="unpriced"), FREE))
    assert outcome.headers["x-modelplane-cost-usd"] == "unpriced"
    rows, store = await ledger_rows(gateway, tmp_path)
    assert rows[0]["cost_usd"] is None
    await store.close()


async def test_upstream_failure_is_raised_and_recorded(gateway: Gateway, fake: FakeProvider, tmp_path: Path) -> None:
    fake.script(rate_limited(3.0))
    with pytest.raises(ProviderError) as info:
        await pipeline.chat(gateway, Inbound(chat_body(), FREE))
    assert info.value.retry_after == 3.0
    rows, store = await ledger_rows(gateway, tmp_path)
    assert rows[0]["status"] == "error" and rows[0]["error_class"] == "rate_limit" and rows[0]["http_status"] == 429
    (call,) = await store.calls_for(str(rows[0]["id"]))
    assert call["error_class"] == "rate_limit"
    await store.close()


async def collect(outcome: pipeline.respond.Outcome) -> list[bytes]:
    assert outcome.chunks is not None
    return [chunk async for chunk in outcome.chunks]


async def test_stream_is_framed_as_sse_and_recorded(gateway: Gateway, fake: FakeProvider, tmp_path: Path) -> None:
    fake.script(Reply(content="one two three"))
    outcome = await pipeline.chat(gateway, Inbound(chat_body(stream=True), FREE))
    assert outcome.headers["content-type"] == "text/event-stream"
    frames = b"".join(await collect(outcome))
    events = [line[6:] for line in frames.split(b"\n") if line.startswith(b"data: ")]
    assert events[-1] == b"[DONE]"
    text = "".join(orjson.loads(e)["choices"][0]["delta"]["content"] for e in events[:-1])
    assert text == "one two three"
    rows, store = await ledger_rows(gateway, tmp_path)
    assert rows[0]["status"] == "ok" and rows[0]["stream"] and rows[0]["output_tokens"] == 20
    assert rows[0]["ttft_ms"] is not None
    await store.close()


async def test_stream_cut_ends_with_an_error_event_never_silently(
    gateway: Gateway, fake: FakeProvider, tmp_path: Path
) -> None:
    fake.script(Reply(content="one two three four", cut_after=2))
    outcome = await pipeline.chat(gateway, Inbound(chat_body(stream=True), FREE))
    frames = b"".join(await collect(outcome))
    assert b"[DONE]" not in frames
    last = [line for line in frames.split(b"\n") if line.startswith(b"data: ")][-1]
    assert orjson.loads(last[6:])["error"]["code"] == "stream_cut"
    rows, store = await ledger_rows(gateway, tmp_path)
    assert rows[0]["status"] == "stream_cut" and rows[0]["error_class"] == "stream_cut"
    await store.close()


async def test_stream_failing_before_first_byte_is_a_plain_error(gateway: Gateway, fake: FakeProvider) -> None:
    fake.script(Reply(content="one two", cut_after=0))
    with pytest.raises(ProviderError):
        await pipeline.chat(gateway, Inbound(chat_body(stream=True), FREE))


async def test_the_ledger_on_postgres(tmp_path: Path, postgres_url: str) -> None:
    config = parse_config(CONFIG, env={})
    config = config.model_copy(update={"ledger": config.ledger.model_copy(update={"url": postgres_url})})
    fake = FakeProvider("up")
    gw = await Gateway.start(LoadedConfig(config, "v-pg", "test", False, tmp_path), providers={"up": fake})
    outcomes = [await pipeline.chat(gw, Inbound(chat_body(), FREE)) for _ in range(3)]
    fake.script(rate_limited())
    with pytest.raises(ProviderError):
        await pipeline.chat(gw, Inbound(chat_body(), FREE))
    await gw.close()
    store = LedgerStore.from_url(postgres_url)
    try:
        rows = await store.servings()
        assert len(rows) == 4 and await store.count("calls") == 4
        served = {o.headers["x-modelplane-serving"] for o in outcomes}
        assert {r["serving_id"] for r in rows if r["status"] == "ok"} == served
        assert [r["error_class"] for r in rows if r["status"] == "error"] == ["rate_limit"]
        assert all(r["config_version"] == "v-pg" for r in rows)
    finally:
        await store.close()
