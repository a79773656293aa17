"""Graceful degradation over real HTTP: retries, breakers, fallback chains, deadlines, streams.

Each test runs the gateway in process against scripted upstreams on 127.0.0.1 and checks
three things: what the client got, what the ledger recorded, and how many requests each
upstream received.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import orjson
import pytest

from modelplane.config.load import LoadedConfig, parse_config
from modelplane.errors import ProviderError
from modelplane.ledger.store import LedgerStore
from modelplane.server.errors import error_response
from modelplane.serving import pipeline
from modelplane.serving.gateway import Gateway
from modelplane.serving.respond import Outcome
from modelplane.serving.state import Inbound
from upstream import ScriptedUpstream, error, malformed, ok, slow, stall, stream_cut

MakeGateway = Callable[[str], Awaitable[Gateway]]
FAST_RETRY = "retry: {attempts: 2, initial: 0.01, max: 0.02}"


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def config_for(urls: dict[str, str], features: str, resilience: str = FAST_RETRY) -> str:
    providers = "\n".join(f'  {name}: {{kind: openai, base_url: "{url}"}}' for name, url in urls.items())
    models = "\n".join(
        f"  {name}: {{provider: {name}, name: up-{name}, price: {{input: 1, output: 2}}, "
        f"timeout: {{connect: 1, first_token: 0.5, total: 1}}}}"
        for name in urls
    )
    return f"providers:\n{providers}\nmodels:\n{models}\nfeatures:\n{features}\nresilience:\n  {resilience}\n"


@pytest.fixture
async def make_gateway(tmp_path: Path) -> AsyncIterator[MakeGateway]:
    started: list[Gateway] = []

    async def make(text: str) -> Gateway:
        config = parse_config(text, env={})
        ledger = config.ledger.model_copy(update={"url": f"sqlite:///{tmp_path}/ledger.db"})
        config = config.model_copy(update={"ledger": ledger})
        gateway = await Gateway.start(LoadedConfig(config, "v-res", "test", False, tmp_path))
        started.append(gateway)
        return gateway

    yield make
    for gateway in started:
        await gateway.close()


async def ledger(gateway: Gateway, tmp_path: Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Every serving and, for the newest, its calls (drains the writer first)."""
    await gateway.recorder.writer.close()
    store = LedgerStore.from_url(f"sqlite:///{tmp_path}/ledger.db")
    try:
        servings = await store.servings()
        calls = await store.calls_for(str(servings[0]["id"])) if servings else []
    finally:
        await store.close()
    return servings, calls


def ask(feature: str, **extra: Any) -> Inbound:
    body = {"model": feature, "messages": [{"role": "user", "content": "hi"}], **extra}
    return Inbound(orjson.dumps(body))


def content(outcome: Outcome) -> str:
    return str(orjson.loads(outcome.body or b"")["choices"][0]["message"]["content"])


async def sse_events(outcome: Outcome) -> list[dict[str, Any]]:
    assert outcome.chunks is not None
    raw = b"".join([chunk async for chunk in outcome.chunks])
    lines = [line[6:] for line in raw.split(b"\n") if line.startswith(b"data: ")]
    assert lines, raw
    return [{"done": True} if line == b"[DONE]" else orjson.loads(line) for line in lines]


async def test_a_500_is_retried_on_the_same_model(make_gateway: MakeGateway, tmp_path: Path) -> None:
    async with ScriptedUpstream() as first, ScriptedUpstream() as second:
        gateway = await make_gateway(
            config_for({"first": first.base_url, "second": second.base_url},
                       "  f: {route: {models: [first, second]}}")
        )
        first.script(error(500), ok("second try"))
        outcome = await pipeline.chat(gateway, ask("f"))
        assert content(outcome) == "second try"
        assert outcome.headers["x-modelplane-fallback"] == "0"
        assert (first.count(), second.count()) == (2, 0)
        servings, calls = await ledger(gateway, tmp_path)
    assert servings[0]["status"] == "ok" and servings[0]["fallback_depth"] == 0
    assert [(c["model"], c["status"], c["error_class"]) for c in calls] == [
        ("first", "error", "server_error"),
        ("first", "ok", None),
    ]


async def test_the_chain_falls_back_through_down_refused_and_slow_models(
    make_gateway: MakeGateway, tmp_path: Path
) -> None:
    async with ScriptedUpstream() as down, ScriptedUpstream() as slow_up, ScriptedUpstream() as healthy:
        urls = {
            "down": down.base_url,
            "refused": f"http://127.0.0.1:{closed_port()}/v1",
            "slowpoke": slow_up.base_url,
            "healthy": healthy.base_url,
        }
        gateway = await make_gateway(
            config_for(urls, "  f: {route: {models: [down, refused, slowpoke], fallback: [healthy]}}")
        )
        down.default = error(500)
        slow_up.default = slow(3.0)
        healthy.script(ok("from the fallback"))
        outcome = await pipeline.chat(gateway, ask("f"))
        assert content(outcome) == "from the fallback"
        assert outcome.headers["x-modelplane-fallback"] == "3"
        assert outcome.headers["x-modelplane-model"] == "healthy"
        assert (down.count(), slow_up.count(), healthy.count()) == (2, 2, 1)
        servings, calls = await ledger(gateway, tmp_path)
    assert servings[0]["fallback_depth"] == 3 and servings[0]["model"] == "healthy"
    assert [(c["model"], c["error_class"]) for c in calls] == [
        ("down", "server_error"),
        ("down", "server_error"),
        ("refused", "connection"),
        ("refused", "connection"),
        ("slowpoke", "timeout"),
        ("slowpoke", "timeout"),
        ("healthy", None),
    ]
    assert {c["serving_id"] for c in calls} == {servings[0]["serving_id"]}


async def test_retry_after_is_honoured_and_a_long_one_moves_on(make_gateway: MakeGateway) -> None:
    async with ScriptedUpstream() as first, ScriptedUpstream() as second:
        gateway = await make_gateway(
            config_for({"first": first.base_url, "second": second.base_url},
                       "  f: {route: {models: [first, second]}}",
                       "retry: {attempts: 2, initial: 0.01, max: 0.02, max_retry_after: 1}")
        )
        first.script(error(429, headers={"retry-after": "0.3"}), ok("after waiting"))
        started = time.perf_counter()
        outcome = await pipeline.chat(gateway, ask("f"))
        assert content(outcome) == "after waiting"
        assert time.perf_counter() - started >= 0.3
        first.script(error(429, headers={"retry-after": "30"}))
        started = time.perf_counter()
        outcome = await pipeline.chat(gateway, ask("f"))
        assert outcome.headers["x-modelplane-fallback"] == "1"
        assert time.perf_counter() - started < 1.0
        assert (first.count(), second.count()) == (3, 1)


async def test_malformed_json_is_a_failure_to_fall_back_from(make_gateway: MakeGateway) -> None:
    async with ScriptedUpstream() as first, ScriptedUpstream() as second:
        gateway = await make_gateway(
            config_for({"first": first.base_url, "second": second.base_url},
                       "  f: {route: {models: [first, second]}}", "retry: {attempts: 1}")
        )
        first.script(malformed())
        outcome = await pipeline.chat(gateway, ask("f"))
        assert outcome.status == 200 and outcome.headers["x-modelplane-fallback"] == "1"


async def test_the_deterministic_answer_is_the_last_resort_never_a_5xx(
    make_gateway: MakeGateway, tmp_path: Path
) -> None:
    async with ScriptedUpstream() as first:
        gateway = await make_gateway(
            config_for({"first": first.base_url},
                       '  f: {route: {models: [first], deterministic_fallback: "A person will follow up."}}')
        )
        first.default = error(503)
        outcome = await pipeline.chat(gateway, ask("f"))
        assert outcome.status == 200
        assert content(outcome) == "A person will follow up."
        assert outcome.headers["x-modelplane-fallback"] == "1"
        assert outcome.headers["x-modelplane-model"] == "deterministic"
        several = orjson.loads((await pipeline.chat(gateway, ask("f", n=2))).body or b"")["choices"]
        assert [(c["index"], c["message"]["content"]) for c in several] == [
            (0, "A person will follow up."),
            (1, "A person will follow up."),
        ]  # as many choices as asked for
        events = await sse_events(await pipeline.chat(gateway, ask("f", stream=True)))
        assert events[0]["choices"][0]["delta"]["content"] == "A person will follow up."
        assert events[-1] == {"done": True}
        # Streamed, every choice is replayed too, each under its index, each with its finish.
        events = await sse_events(await pipeline.chat(gateway, ask("f", stream=True, n=3)))
        streamed = [c for e in events if e.get("choices") for c in e["choices"]]
        assert [(c["index"], c["delta"].get("content")) for c in streamed if c["delta"]] == [
            (i, "A person will follow up.") for i in range(3)
        ]
        finishes = [(c["index"], c["finish_reason"]) for c in streamed if not c["delta"]]
        assert finishes == [(i, "stop") for i in range(3)]
        servings, _ = await ledger(gateway, tmp_path)
    assert {s["model"] for s in servings} == {"deterministic"}
    assert all(s["status"] == "ok" and s["fallback_depth"] == 1 for s in servings)


async def test_without_a_fallback_the_failure_reaches_the_client(make_gateway: MakeGateway) -> None:
    async with ScriptedUpstream() as first:
        gateway = await make_gateway(config_for({"first": first.base_url}, "  f: {route: {models: [first]}}"))
        first.default = error(500)
        with pytest.raises(ProviderError) as info:
            await pipeline.chat(gateway, ask("f"))
        assert info.value.status == 500 and first.count() == 2


async def test_a_bad_request_is_not_retried_nor_failed_over(make_gateway: MakeGateway) -> None:
    async with ScriptedUpstream() as first, ScriptedUpstream() as second:
        gateway = await make_gateway(
            config_for({"first": first.base_url, "second": second.base_url}, "  f: {route: {models: [first, second]}}")
        )
        first.script(error(400))
        with pytest.raises(ProviderError):
            await pipeline.chat(gateway, ask("f"))
        assert (first.count(), second.count()) == (1, 0)


async def test_a_stream_stalled_before_its_first_chunk_fails_over_unseen(
    make_gateway: MakeGateway, tmp_path: Path
) -> None:
    async with ScriptedUpstream() as first, ScriptedUpstream() as second:
        gateway = await make_gateway(
            config_for({"first": first.base_url, "second": second.base_url},
                       "  f: {route: {models: [first, second]}}", "retry: {attempts: 1}")
        )
        first.script(stall(3.0))
        second.script(ok("all of it"))
        outcome = await pipeline.chat(gateway, ask("f", stream=True))
        assert outcome.headers["x-modelplane-fallback"] == "1"
        events = await sse_events(outcome)
        text = "".join(e["choices"][0]["delta"].get("content") or "" for e in events if e.get("choices"))
        assert text == "all of it" and events[-1] == {"done": True}
        servings, calls = await ledger(gateway, tmp_path)
    assert [(c["model"], c["error_class"]) for c in calls] == [("first", "timeout"), ("second", None)]
    assert servings[0]["status"] == "ok"


async def test_a_stream_cut_after_bytes_ends_with_an_error_event(make_gateway: MakeGateway, tmp_path: Path) -> None:
    async with ScriptedUpstream() as first, ScriptedUpstream() as second:
        gateway = await make_gateway(
            config_for({"first": first.base_url, "second": second.base_url}, "  f: {route: {models: [first, second]}}")
        )
        first.script(stream_cut(after_chunks=2))
        events = await sse_events(await pipeline.chat(gateway, ask("f", stream=True)))
        assert events[-1]["error"]["code"] == "stream_cut"
        assert {"done": True} not in events
        assert second.count() == 0  # bytes had reached the client: no silent switch mid-answer
        servings, _ = await ledger(gateway, tmp_path)
    assert servings[0]["status"] == "stream_cut" and servings[0]["error_class"] == "stream_cut"


async def test_an_open_breaker_stops_the_traffic_and_half_open_lets_one_probe_through(
    make_gateway: MakeGateway,
) -> None:
    async with ScriptedUpstream() as dead, ScriptedUpstream() as healthy:
        gateway = await make_gateway(
            config_for({"dead": dead.base_url, "healthy": healthy.base_url},
                       "  f: {route: {models: [dead, healthy]}}",
                       "retry: {attempts: 1}\n"
                       "  breaker: {window: 30, min_requests: 5, failure_rate: 0.5, cooldown: 0.5}")
        )
        dead.default = error(500)
        for _ in range(20):
            outcome = await pipeline.chat(gateway, ask("f"))
            assert outcome.status == 200
        assert dead.count() == 5  # the breaker opened after min_requests failures; then no more traffic
        (view,) = [v for v in await gateway.invoker.breakers.views() if v.key == "dead@dead"]
        assert view.state == "open"
        await asyncio.sleep(0.6)
        outcomes = await asyncio.gather(*(pipeline.chat(gateway, ask("f")) for _ in range(10)))
        assert all(o.status == 200 for o in outcomes)
        assert dead.count() == 6  # exactly one probe in half-open
        dead.default = ok("back")
        await asyncio.sleep(0.6)
        outcome = await pipeline.chat(gateway, ask("f"))  # the probe succeeds and closes the breaker
        assert content(outcome) == "back"
        (view,) = [v for v in await gateway.invoker.breakers.views() if v.key == "dead@dead"]
        assert view.state == "closed"


def two_deployments(a: ScriptedUpstream, b: ScriptedUpstream, breaker: str) -> str:
    return f"""
providers:
  a: {{kind: openai, base_url: "{a.base_url}"}}
  b: {{kind: openai, base_url: "{b.base_url}"}}
models:
  m: {{provider: a, name: up-m, weight: 1, deployments: [{{provider: b, weight: 1}}]}}
features:
  f: {{route: {{models: [m]}}}}
resilience:
  retry: {{attempts: 2, initial: 0.001, max: 0.002}}
  breaker: {breaker}
"""


async def test_deployments_share_the_traffic(make_gateway: MakeGateway) -> None:
    async with ScriptedUpstream() as a, ScriptedUpstream() as b:
        gateway = await make_gateway(two_deployments(a, b, "{min_requests: 10}"))
        for _ in range(5):
            await asyncio.gather(*(pipeline.chat(gateway, ask("f")) for _ in range(8)))
        assert a.count() >= 8 and b.count() >= 8


async def test_a_failing_deployment_is_retried_elsewhere_and_its_open_breaker_skipped(
    make_gateway: MakeGateway,
) -> None:
    async with ScriptedUpstream() as a, ScriptedUpstream() as b:
        gateway = await make_gateway(two_deployments(a, b, "{min_requests: 1, failure_rate: 0.5, cooldown: 60}"))
        a.default = error(500)
        for _ in range(20):
            assert (await pipeline.chat(gateway, ask("f"))).status == 200  # a retry goes to the other deployment
        states = {v.key: v.state for v in await gateway.invoker.breakers.views()}
        assert states == {"m@a": "open", "m@b": "closed"}
        assert a.count() == 1 and b.count() == 20


async def test_the_feature_deadline_bounds_the_whole_serving(make_gateway: MakeGateway) -> None:
    async with ScriptedUpstream() as first, ScriptedUpstream() as second:
        gateway = await make_gateway(
            config_for({"first": first.base_url, "second": second.base_url},
                       '  f: {deadline: 0.4, route: {models: [first, second], deterministic_fallback: "late"}}')
        )
        first.default = slow(0.5)
        second.default = slow(0.5)
        started = time.perf_counter()
        outcome = await pipeline.chat(gateway, ask("f"))
        assert time.perf_counter() - started < 0.7
        assert content(outcome) == "late"


async def test_retries_stay_within_the_budget(make_gateway: MakeGateway) -> None:
    async with ScriptedUpstream() as first:
        gateway = await make_gateway(
            config_for({"first": first.base_url}, '  f: {route: {models: [first], deterministic_fallback: "x"}}',
                       "retry: {attempts: 3, initial: 0.001, max: 0.001, budget_ratio: 0.1, budget_min_per_second: 0}\n"
                       "  breaker: {min_requests: 100000}")
        )
        first.default = error(500)
        gateway.invoker.budget._tokens = 0.0  # start empty: only the ratio of first attempts may retry
        for _ in range(100):
            await pipeline.chat(gateway, ask("f"))
        # 100 first attempts earn 10 retries; without a budget there would have been 200.
        assert 100 <= first.count() <= 111


async def test_breaker_state_survives_a_reload(make_gateway: MakeGateway, tmp_path: Path) -> None:
    async with ScriptedUpstream() as dead, ScriptedUpstream() as healthy:
        text = config_for({"dead": dead.base_url, "healthy": healthy.base_url},
                          "  f: {route: {models: [dead, healthy]}}",
                          "retry: {attempts: 1}\n  breaker: {min_requests: 3, cooldown: 60}")
        gateway = await make_gateway(text)
        dead.default = error(500)
        for _ in range(6):
            await pipeline.chat(gateway, ask("f"))
        assert dead.count() == 3
        config = parse_config(text + "  # an unrelated edit\n", env={})
        config = config.model_copy(update={"features": {**config.features}, "tiers": {"gold": config.tiers["default"]}})
        config = config.model_copy(update={"ledger": config.ledger.model_copy(update={"url": f"sqlite:///{tmp_path}/l2.db"})})
        await gateway.reload(LoadedConfig(config, "v-2", "test", False, tmp_path))
        assert gateway.runtime.version == "v-2"
        for _ in range(5):
            assert (await pipeline.chat(gateway, ask("f"))).status == 200
        assert dead.count() == 3  # still open after the reload


SCHEMA_FEATURE = (
    "  f:\n"
    "    route:\n"
    "      models: [first, second]\n"
    '      deterministic_fallback: "{\\"priority\\": \\"low\\", \\"reply\\": \\"later\\"}"\n'
    "    output:\n"
    "      json_schema: {type: object, required: [priority, reply],\n"
    "                    properties: {priority: {enum: [low, high]}, reply: {type: string}}}\n"
    "      reask: 1\n"
)


async def test_malformed_json_content_is_repaired(make_gateway: MakeGateway) -> None:
    async with ScriptedUpstream() as first, ScriptedUpstream() as second:
        gateway = await make_gateway(config_for({"first": first.base_url, "second": second.base_url}, SCHEMA_FEATURE))
        first.script(ok("{'priority': 'high', 'reply': 'on it',}"))
        outcome = await pipeline.chat(gateway, ask("f"))
        assert orjson.loads(content(outcome)) == {"priority": "high", "reply": "on it"}
        assert (first.count(), second.count()) == (1, 0)


async def test_content_failing_the_schema_is_reasked_with_the_error(make_gateway: MakeGateway) -> None:
    async with ScriptedUpstream() as first, ScriptedUpstream() as second:
        gateway = await make_gateway(config_for({"first": first.base_url, "second": second.base_url}, SCHEMA_FEATURE))
        first.script(ok('{"priority": "urgent", "reply": "now"}'), ok('{"priority": "high", "reply": "now"}'))
        outcome = await pipeline.chat(gateway, ask("f"))
        assert orjson.loads(content(outcome)) == {"priority": "high", "reply": "now"}
        reask = first.requests[1].json["messages"]
        assert reask[-2] == {"role": "assistant", "content": '{"priority": "urgent", "reply": "now"}'}
        assert "urgent" in reask[-1]["content"] and reask[-1]["role"] == "user"
        assert second.count() == 0


async def test_invalid_everywhere_escalates_and_answers_deterministically(
    make_gateway: MakeGateway, tmp_path: Path
) -> None:
    async with ScriptedUpstream() as first, ScriptedUpstream() as second:
        gateway = await make_gateway(config_for({"first": first.base_url, "second": second.base_url}, SCHEMA_FEATURE))
        first.default = ok('{"priority": "urgent"}')
        second.default = ok("I cannot answer in JSON, sorry.")
        outcome = await pipeline.chat(gateway, ask("f"))
        assert outcome.status == 200
        assert orjson.loads(content(outcome)) == {"priority": "low", "reply": "later"}
        assert outcome.headers["x-modelplane-fallback"] == "2"
        assert (first.count(), second.count()) == (2, 2)  # each model asked once and re-asked once
        escalations = await gateway.store.escalations()
        servings, calls = await ledger(gateway, tmp_path)
    (queued,) = escalations
    assert queued["feature"] == "f" and queued["status"] == "open"
    assert queued["last_output"] == "I cannot answer in JSON, sorry."
    assert queued["serving_id"] == servings[0]["serving_id"]
    assert servings[0]["status"] == "escalated" and len(calls) == 4


async def test_a_request_schema_applies_and_a_validated_stream_is_replayed(make_gateway: MakeGateway) -> None:
    async with ScriptedUpstream() as first:
        gateway = await make_gateway(config_for({"first": first.base_url}, "  f: {route: {models: [first]}}"))
        schema = {"type": "object", "required": ["n"], "properties": {"n": {"type": "integer"}}}
        response_format = {"type": "json_schema", "json_schema": {"name": "n", "schema": schema}}
        first.script(ok('{"n": "seven"}'), ok('{"n": 7}'))
        events = await sse_events(await pipeline.chat(gateway, ask("f", stream=True, response_format=response_format)))
        text = "".join(e["choices"][0]["delta"].get("content") or "" for e in events if e.get("choices"))
        assert orjson.loads(text) == {"n": 7} and events[-1] == {"done": True}
        assert all("stream" not in r.json for r in first.requests)  # asked unstreamed, validated, replayed


async def test_invalid_everywhere_without_a_fallback_is_escalated_not_an_error(
    make_gateway: MakeGateway, tmp_path: Path
) -> None:
    feature = SCHEMA_FEATURE.replace("      models: [first, second]\n", "      models: [first]\n").replace(
        '      deterministic_fallback: "{\\"priority\\": \\"low\\", \\"reply\\": \\"later\\"}"\n', ""
    )
    assert "deterministic_fallback" not in feature and "models: [first]" in feature
    async with ScriptedUpstream() as first:
        gateway = await make_gateway(config_for({"first": first.base_url}, feature))
        first.default = ok("Sorry, no JSON from me.")
        with pytest.raises(ProviderError) as caught:
            await pipeline.chat(gateway, ask("f"))
        assert caught.value.error_class == "invalid_output"
        escalations = await gateway.store.escalations()
        servings, _ = await ledger(gateway, tmp_path)
    (queued,) = escalations
    assert queued["serving_id"] == servings[0]["serving_id"] and queued["last_output"] == "Sorry, no JSON from me."
    # The report counts escalations by status: the 502 the client got is kept beside it, not over it.
    row = servings[0]
    assert (row["status"], row["http_status"], row["error_class"]) == ("escalated", 502, "invalid_output")


async def test_open_breakers_alone_answer_503_with_the_wait_until_the_probe(
    make_gateway: MakeGateway, tmp_path: Path
) -> None:
    async with ScriptedUpstream() as remote:
        gateway = await make_gateway(
            config_for({"remote": remote.base_url}, "  f: {route: {models: [remote]}}",
                       "retry: {attempts: 1}\n  breaker: {min_requests: 2, failure_rate: 0.5, cooldown: 30}")
        )
        remote.default = error(500)
        for _ in range(2):  # two failures open the breaker
            with pytest.raises(ProviderError) as failed:
                await pipeline.chat(gateway, ask("f"))
            assert failed.value.status == 500
        with pytest.raises(ProviderError) as caught:
            await pipeline.chat(gateway, ask("f"))
        assert remote.count() == 2  # the third serving never reached the upstream
        servings, calls = await ledger(gateway, tmp_path)
    held = caught.value
    assert held.message == (
        "circuit breaker open for every deployment of 'remote' after repeated failures; next try in 30 s"
    )
    assert held.retry_after is not None and 29 < held.retry_after <= 30
    response = error_response(held)
    assert response.status_code == 503 and response.headers["retry-after"] == "30"
    assert orjson.loads(response.body)["error"]["code"] == "circuit_open"
    assert (servings[0]["status"], servings[0]["http_status"], servings[0]["error_class"]) == (
        "error",
        503,
        "circuit_open",
    )
    assert calls == []


async def test_a_real_failure_beside_an_open_breaker_is_what_the_client_hears(make_gateway: MakeGateway) -> None:
    async with ScriptedUpstream() as held, ScriptedUpstream() as failing:
        gateway = await make_gateway(
            config_for({"held": held.base_url, "failing": failing.base_url},
                       "  f: {route: {models: [held, failing]}}\n  g: {route: {models: [held]}}",
                       "retry: {attempts: 1}\n  breaker: {min_requests: 1, failure_rate: 0.5, cooldown: 30}")
        )
        held.script(error(500))
        with pytest.raises(ProviderError):
            await pipeline.chat(gateway, ask("g"))  # opens held's breaker
        failing.default = error(500)
        with pytest.raises(ProviderError) as caught:
            await pipeline.chat(gateway, ask("f"))
    # Not "try again in 30 s": the other model failed for real, so no retry-after promises a recovery.
    assert caught.value.status == 500 and caught.value.retry_after is None
    assert "retry-after" not in error_response(caught.value).headers
