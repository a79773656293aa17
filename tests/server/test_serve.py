"""`modelplane serve` as a subprocess, driven by the official openai SDK, in front of the scripted upstream."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import httpx
import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam

from modelplane.ledger.store import LedgerStore
from upstream import ScriptedUpstream, embed, error, ok, slow, stream_cut

if TYPE_CHECKING:
    from gateways import GatewayProcess

JSON = dict[str, Any]

USER_KEY = "mp-user-key-0001"
ADMIN_KEY = "mp-admin-key-0002"
UPSTREAM_KEY = "sk-upstream-secret"
HI: list[ChatCompletionMessageParam] = [{"role": "user", "content": "Hi"}]
# The small model's price in USD per 1M tokens, as in the config below.
PRICE_IN, PRICE_CACHED, PRICE_OUT = 0.15, 0.075, 0.60


def key_hash(key: str) -> str:
    return "sha256:" + hashlib.sha256(key.encode()).hexdigest()


def write_config(path: Path, upstream_url: str, ledger: Path) -> Path:
    path.write_text(
        f"""\
providers:
  up: {{kind: openai, base_url: "{upstream_url}", api_key: {UPSTREAM_KEY}}}
models:
  small:
    provider: up
    name: gpt-up-small
    price: {{input: {PRICE_IN}, cached_input: {PRICE_CACHED}, output: {PRICE_OUT}}}
    timeout: {{total: 0.5}}
  large: {{provider: up, name: gpt-up-large, price: {{input: 2.5, output: 10}}}}
tiers:
  default: {{revenue_per_serving: 0}}
  pro: {{monthly_price: 20, expected_servings_per_month: 400}}
features:
  chat: {{route: {{strategy: single, models: [small]}}}}
  premium: {{tiers: [pro], route: {{strategy: single, models: [large]}}}}
keys:
  - {{hash: "{key_hash(USER_KEY)}", tenant: acme, tier: default}}
  - {{hash: "{key_hash(ADMIN_KEY)}", tenant: ops, tier: pro, admin: true, name: ops-admin}}
ledger: {{url: "sqlite:///{ledger}"}}
server: {{max_body_bytes: 2048}}
# One attempt, no fallback: these tests check how each upstream failure reaches the client.
resilience: {{retry: {{attempts: 1}}}}
""",
        encoding="utf-8",
    )
    return path


@pytest.fixture(scope="module")
def upstream() -> Iterator[ScriptedUpstream]:
    with ScriptedUpstream.in_thread() as up:
        yield up


@pytest.fixture(autouse=True)
def fresh_script(upstream: ScriptedUpstream) -> None:
    """A test that failed midway must not leave its scripted steps to the next one."""
    with upstream._lock:
        upstream._queue.clear()


@pytest.fixture(scope="module")
def gateway(
    upstream: ScriptedUpstream, tmp_path_factory: pytest.TempPathFactory, launch_gateway: Callable[..., GatewayProcess]
) -> Iterator[GatewayProcess]:
    root = tmp_path_factory.mktemp("serve")
    config = write_config(root / "modelplane.yaml", upstream.base_url, root / "ledger.db")
    process = launch_gateway(root, root / "home", config)
    yield process
    assert process.stop() == 0, process.stderr


def sdk(gateway: GatewayProcess, key: str = USER_KEY) -> openai.OpenAI:
    # No SDK retries: each scripted upstream step must be consumed exactly once.
    return openai.OpenAI(base_url=gateway.url + "/v1", api_key=key, max_retries=0, timeout=10)


class HTTPAnswer(Protocol):
    """An httpx response, or the one the openai SDK's errors carry (its own httpx fork)."""

    @property
    def status_code(self) -> int: ...

    @property
    def text(self) -> str: ...

    def json(self) -> Any: ...


def assert_openai_error(response: HTTPAnswer, status: int, code: str | None = None) -> JSON:
    """The status, OpenAI's error shape, and no leaked traceback; returns the `error` object."""
    assert response.status_code == status, response.text
    assert "Traceback" not in response.text
    error_object: JSON = response.json()["error"]
    assert isinstance(error_object["message"], str) and error_object["message"]
    assert isinstance(error_object["type"], str) and error_object["type"]
    assert "code" in error_object
    if code is not None:
        assert error_object["code"] == code
    return error_object


def cost_of(prompt: int, cached: int, completion: int) -> float:
    return ((prompt - cached) * PRICE_IN + cached * PRICE_CACHED + completion * PRICE_OUT) / 1e6


# ---------------------------------------------------------------- chat


def test_plain_chat_and_the_headers_that_say_what_happened(gateway: GatewayProcess, upstream: ScriptedUpstream) -> None:
    upstream.script(ok("Hello from upstream", prompt_tokens=1000, cached_tokens=200, completion_tokens=50))
    raw = sdk(gateway).chat.completions.with_raw_response.create(model="chat", messages=HI)
    completion = raw.parse()
    assert completion.choices[0].message.content == "Hello from upstream"
    assert completion.usage is not None and completion.usage.prompt_tokens == 1000
    assert completion.usage.completion_tokens == 50
    assert raw.headers["x-modelplane-model"] == "small"
    assert raw.headers["x-modelplane-cache"] == "miss"
    assert raw.headers["x-modelplane-fallback"] == "0"
    assert len(raw.headers["x-modelplane-serving"]) >= 16
    # 800 plain input, 200 cached input, 50 output tokens at the small model's price.
    assert float(raw.headers["x-modelplane-cost-usd"]) == pytest.approx(cost_of(1000, 200, 50))
    assert float(raw.headers["x-modelplane-cost-usd"]) == pytest.approx(0.000165)
    received = upstream.requests[-1]
    assert received.json["model"] == "gpt-up-small"
    assert received.json["messages"] == HI
    # The upstream sees the provider's key, never the client's.
    assert received.headers["authorization"] == f"Bearer {UPSTREAM_KEY}"


def test_the_feature_header_wins_over_the_body_model(gateway: GatewayProcess, upstream: ScriptedUpstream) -> None:
    upstream.script(ok("via header"))
    raw = sdk(gateway, ADMIN_KEY).chat.completions.with_raw_response.create(
        model="not-a-feature",
        messages=HI,
        extra_headers={"X-Modelplane-Feature": "premium"},
    )
    assert raw.parse().choices[0].message.content == "via header"
    assert raw.headers["x-modelplane-model"] == "large"
    assert upstream.requests[-1].json["model"] == "gpt-up-large"
    # 10 input and 5 output tokens (the scripted default) at 2.5 and 10 USD per 1M.
    assert float(raw.headers["x-modelplane-cost-usd"]) == pytest.approx((10 * 2.5 + 5 * 10) / 1e6)


def test_a_client_serving_id_is_echoed(gateway: GatewayProcess) -> None:
    raw = sdk(gateway).chat.completions.with_raw_response.create(
        model="chat",
        messages=HI,
        extra_headers={"X-Modelplane-Serving": "conversation-42"},
    )
    assert raw.headers["x-modelplane-serving"] == "conversation-42"


def test_tools_and_response_format_pass_through_unchanged(gateway: GatewayProcess, upstream: ScriptedUpstream) -> None:
    tools: list[JSON] = [
        {
            "type": "function",
            "function": {
                "name": "weather",
                "description": "Weather for a city",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
            },
        }
    ]
    response_format: JSON = {
        "type": "json_schema",
        "json_schema": {"name": "reply", "schema": {"type": "object", "properties": {"a": {"type": "integer"}}}},
    }
    upstream.script(ok("", tool_calls=[{"id": "call_9", "name": "weather", "arguments": {"city": "Oslo"}}]))
    # Plain dicts, as a client would send them, rather than the SDK's TypedDicts.
    completion = sdk(gateway).chat.completions.create(  # type: ignore[call-overload]
        model="chat",
        messages=HI,
        tools=tools,
        tool_choice="auto",
        response_format=response_format,
    )
    received = upstream.requests[-1].json
    assert received["tools"] == tools
    assert received["response_format"] == response_format
    assert received["tool_choice"] == "auto"
    call = completion.choices[0].message.tool_calls[0]
    assert call.id == "call_9" and call.function.name == "weather"
    assert completion.choices[0].finish_reason == "tool_calls"


# ---------------------------------------------------------------- streams


def test_streaming_reassembles(gateway: GatewayProcess, upstream: ScriptedUpstream) -> None:
    upstream.script(ok("The quick brown fox jumps", completion_tokens=5))
    chunks = list(sdk(gateway).chat.completions.create(model="chat", messages=HI, stream=True))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "The quick brown fox jumps"
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert all(c.usage is None for c in chunks)  # the client did not ask for usage


def test_streaming_with_include_usage_ends_with_usage(gateway: GatewayProcess, upstream: ScriptedUpstream) -> None:
    upstream.script(ok("one two three", prompt_tokens=12, completion_tokens=3))
    chunks = list(
        sdk(gateway).chat.completions.create(
            model="chat",
            messages=HI,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "one two three"
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None
    assert (chunks[-1].usage.prompt_tokens, chunks[-1].usage.completion_tokens) == (12, 3)


def test_a_stream_cut_upstream_raises_in_the_sdk(gateway: GatewayProcess, upstream: ScriptedUpstream) -> None:
    upstream.script(stream_cut(after_chunks=2))
    seen: list[str] = []
    stream = sdk(gateway).chat.completions.create(model="chat", messages=HI, stream=True)
    with pytest.raises(openai.APIError) as caught:
        for chunk in stream:
            if chunk.choices:
                seen.append(chunk.choices[0].delta.content or "")
    assert "".join(seen) == "Hell"  # "Hello!" streams as "He", "ll", "o!"; the cut came after two
    assert caught.value.message == "upstream closed the stream before it ended"  # no aiohttp internals
    assert isinstance(caught.value.body, dict) and caught.value.body["code"] == "stream_cut"


# ---------------------------------------------------------------- errors


def test_401_for_a_bad_key(gateway: GatewayProcess) -> None:
    with pytest.raises(openai.AuthenticationError) as caught:
        sdk(gateway, "not-a-key").chat.completions.create(model="chat", messages=HI)
    assert_openai_error(caught.value.response, 401, "invalid_api_key")


def test_404_for_an_unknown_feature(gateway: GatewayProcess) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        sdk(gateway).chat.completions.create(model="no-such-feature", messages=HI)
    err = assert_openai_error(caught.value.response, 404, "model_not_found")
    assert "no-such-feature" in err["message"]


def test_403_for_a_feature_outside_the_tier(gateway: GatewayProcess, upstream: ScriptedUpstream) -> None:
    before = len(upstream.requests)
    with pytest.raises(openai.PermissionDeniedError) as caught:
        sdk(gateway).chat.completions.create(model="premium", messages=HI)
    err = assert_openai_error(caught.value.response, 403, "feature_not_in_tier")
    assert "'default'" in err["message"] and "premium" in err["message"]
    assert len(upstream.requests) == before  # refused before any upstream call


def test_400_for_a_malformed_json_body(gateway: GatewayProcess) -> None:
    response = httpx.post(
        gateway.url + "/v1/chat/completions",
        content=b'{"model": "chat", "messages": [',
        headers={"authorization": f"Bearer {USER_KEY}", "content-type": "application/json"},
    )
    err = assert_openai_error(response, 400)
    assert err["type"] == "invalid_request_error"
    assert "JSON" in err["message"]


def test_400_for_messages_of_the_wrong_type(gateway: GatewayProcess) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        sdk(gateway).chat.completions.create(model="chat", messages="Hi")  # type: ignore[arg-type]
    err = assert_openai_error(caught.value.response, 400)
    assert err["param"] == "messages"
    assert "`messages` must be an array" in err["message"]


def post_chat(gateway: GatewayProcess, **body: Any) -> httpx.Response:
    """A raw POST, for bodies the SDK's types would not let through."""
    body = {"model": "chat", "messages": HI, **body}
    return httpx.post(
        gateway.url + "/v1/chat/completions", json=body, headers={"authorization": f"Bearer {USER_KEY}"}, timeout=10
    )


@pytest.mark.parametrize(
    ("field", "value", "code", "message"),
    [
        ("temperature", 2.5, "decimal_above_max_value", "Expected a value <= 2, but got 2.5 instead."),
        ("temperature", -0.1, "decimal_below_min_value", "Expected a value >= 0, but got -0.1 instead."),
        ("top_p", 1.5, "decimal_above_max_value", "Expected a value <= 1, but got 1.5 instead."),
        ("max_tokens", 0, "integer_below_min_value", "Expected a value >= 1, but got 0 instead."),
        ("max_completion_tokens", -5, "integer_below_min_value", "Expected a value >= 1, but got -5 instead."),
        ("n", 0, "integer_below_min_value", "Expected a value >= 1, but got 0 instead."),
    ],
)
def test_400_for_parameters_out_of_openais_range(
    gateway: GatewayProcess, upstream: ScriptedUpstream, field: str, value: float, code: str, message: str
) -> None:
    before = len(upstream.requests)
    err = assert_openai_error(post_chat(gateway, **{field: value}), 400, code)
    assert err["type"] == "invalid_request_error" and err["param"] == field
    assert err["message"].startswith(f"Invalid '{field}': ") and err["message"].endswith(message)
    assert len(upstream.requests) == before


IMAGE_PART = {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}


@pytest.mark.parametrize(
    ("messages", "param", "code"),
    [
        ([{"role": "robot", "content": "Hi"}], "messages[0].role", "invalid_value"),
        ([{"role": "user"}], "messages[0].content", "missing_required_parameter"),
        (
            [{"role": "system", "content": None}, {"role": "user", "content": "Hi"}],
            "messages[0].content",
            "invalid_type",
        ),
        (
            [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": None}],
            "messages[1].content",
            "invalid_type",
        ),
        ([{"role": "user", "content": 42}], "messages[0].content", "invalid_type"),
        # System, developer and tool messages take text parts only (a provider would drop an image unsaid).
        (
            [
                {"role": "system", "content": [{"type": "text", "text": "Be brief."}, IMAGE_PART]},
                {"role": "user", "content": "Hi"},
            ],
            "messages[0].content[1].type",
            "invalid_value",
        ),
        (
            [{"role": "user", "content": "Hi"}, {"role": "tool", "tool_call_id": "c", "content": [IMAGE_PART]}],
            "messages[1].content[0].type",
            "invalid_value",
        ),
    ],
)
def test_400_for_a_wrong_role_or_missing_content(
    gateway: GatewayProcess, upstream: ScriptedUpstream, messages: list[JSON], param: str, code: str
) -> None:
    before = len(upstream.requests)
    err = assert_openai_error(post_chat(gateway, messages=messages), 400, code)
    assert err["type"] == "invalid_request_error" and err["param"] == param
    assert param in err["message"]
    assert len(upstream.requests) == before


def test_an_assistant_turn_that_called_tools_needs_no_content(
    gateway: GatewayProcess, upstream: ScriptedUpstream
) -> None:
    call = {"id": "call_1", "type": "function", "function": {"name": "weather", "arguments": "{}"}}
    messages = [
        {"role": "developer", "content": "Be brief."},
        {"role": "user", "content": "Weather?"},
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
    ]
    upstream.script(ok("It is sunny."))
    answered = post_chat(gateway, messages=messages)
    assert answered.status_code == 200, answered.text
    assert upstream.requests[-1].json["messages"] == messages


def test_several_choices_and_logprobs_pass_through_to_an_openai_upstream(
    gateway: GatewayProcess, upstream: ScriptedUpstream
) -> None:
    # The chain's only model is on an OpenAI-compatible provider, which can give both.
    answered = post_chat(gateway, n=2, logprobs=True, top_logprobs=2)
    assert answered.status_code == 200, answered.text
    sent = upstream.requests[-1].json
    assert (sent["n"], sent["logprobs"], sent["top_logprobs"]) == (2, True, 2)


@pytest.mark.parametrize(
    ("method", "path", "status", "allow"),
    [
        ("GET", "/v1/chat/completions", 405, "POST"),
        ("PUT", "/v1/embeddings", 405, "POST"),
        ("POST", "/v1/models", 405, "GET, HEAD"),
        ("POST", "/v1/completions", 404, None),
        ("GET", "/v1/nowhere", 404, None),
    ],
)
def test_unknown_routes_and_wrong_methods_answer_openai_shaped_json(
    gateway: GatewayProcess, method: str, path: str, status: int, allow: str | None
) -> None:
    response = httpx.request(method, gateway.url + path, headers={"authorization": f"Bearer {USER_KEY}"})
    err = assert_openai_error(response, status, "method_not_allowed" if allow else "not_found")
    assert response.headers["content-type"] == "application/json"
    assert f"{method} {path}" in err["message"]
    assert response.headers.get("allow") == allow


def test_413_for_a_body_over_the_limit(gateway: GatewayProcess, upstream: ScriptedUpstream) -> None:
    before = len(upstream.requests)
    with pytest.raises(openai.APIStatusError) as caught:
        sdk(gateway).chat.completions.create(
            model="chat",
            messages=[{"role": "user", "content": "x" * 4000}],
        )
    err = assert_openai_error(caught.value.response, 413, "request_too_large")
    assert "2048" in err["message"]
    assert len(upstream.requests) == before


def test_502_when_the_upstream_fails(gateway: GatewayProcess, upstream: ScriptedUpstream) -> None:
    upstream.script(error(500))
    with pytest.raises(openai.InternalServerError) as caught:
        sdk(gateway).chat.completions.create(model="chat", messages=HI)
    err = assert_openai_error(caught.value.response, 502, "server_error")
    assert err["type"] == "upstream_error"


def test_504_when_the_upstream_is_slower_than_the_models_timeout(
    gateway: GatewayProcess, upstream: ScriptedUpstream
) -> None:
    upstream.script(slow(3.0))
    with pytest.raises(openai.InternalServerError) as caught:
        sdk(gateway).chat.completions.create(model="chat", messages=HI)
    assert_openai_error(caught.value.response, 504, "timeout")


def test_429_with_retry_after_when_the_upstream_limits(gateway: GatewayProcess, upstream: ScriptedUpstream) -> None:
    upstream.script(error(429, headers={"retry-after": "2"}))
    with pytest.raises(openai.RateLimitError) as caught:
        sdk(gateway).chat.completions.create(model="chat", messages=HI)
    assert_openai_error(caught.value.response, 429, "rate_limit")
    assert caught.value.response.headers["retry-after"] == "2"


# ---------------------------------------------------------------- embeddings


def test_embeddings(gateway: GatewayProcess, upstream: ScriptedUpstream) -> None:
    result = sdk(gateway).embeddings.create(model="chat", input=["a b", "c"], encoding_format="float")
    assert [item.embedding for item in result.data] == [embed("a b"), embed("c")]
    assert result.usage.prompt_tokens == 3
    received = upstream.requests[-1]
    assert received.path == "/v1/embeddings"
    assert received.json["model"] == "gpt-up-small" and received.json["input"] == ["a b", "c"]


# ---------------------------------------------------------------- the other endpoints


def test_models_lists_only_the_features_of_the_keys_tier(gateway: GatewayProcess) -> None:
    assert [m.id for m in sdk(gateway).models.list()] == ["chat"]
    assert sorted(m.id for m in sdk(gateway, ADMIN_KEY).models.list()) == ["chat", "premium"]
    assert_openai_error(httpx.get(gateway.url + "/v1/models"), 401)


def test_healthz(gateway: GatewayProcess) -> None:
    response = httpx.get(gateway.url + "/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_metrics_count_servings_by_feature(gateway: GatewayProcess) -> None:
    sdk(gateway).chat.completions.create(model="chat", messages=HI)
    response = httpx.get(gateway.url + "/metrics")
    assert response.status_code == 200
    lines = [line for line in response.text.splitlines() if line.startswith("modelplane_servings_total{")]
    ok_chat = [line for line in lines if 'feature="chat"' in line and 'status="ok"' in line]
    assert ok_chat and float(ok_chat[0].rsplit(" ", 1)[1]) >= 1


def test_admin_config_needs_the_admin_key(gateway: GatewayProcess) -> None:
    # A valid key without the admin role is forbidden (403); no key, or an unknown one, is unauthenticated (401).
    refused = httpx.get(gateway.url + "/admin/config", headers={"authorization": f"Bearer {USER_KEY}"})
    err = assert_openai_error(refused, 403, "admin_key_required")
    assert err["type"] == "permission_error" and "tenant 'acme'" in err["message"]
    assert_openai_error(httpx.get(gateway.url + "/admin/config"), 401, "invalid_api_key")
    unknown = httpx.get(gateway.url + "/admin/config", headers={"authorization": "Bearer not-a-key"})
    assert assert_openai_error(unknown, 401)["type"] == "authentication_error"
    allowed = httpx.get(gateway.url + "/admin/config", headers={"authorization": f"Bearer {ADMIN_KEY}"})
    assert allowed.status_code == 200
    assert allowed.json()["version"]
    assert allowed.json()["source"].endswith("modelplane.yaml")
    assert UPSTREAM_KEY not in allowed.text


# ---------------------------------------------------------------- the ledger


async def _read_ledger(url: str) -> tuple[list[JSON], dict[str, list[JSON]]]:
    store = LedgerStore.from_url(url)
    try:
        servings = await store.servings(limit=1000)
        calls = {row["id"]: await store.calls_for(row["id"]) for row in servings}
    finally:
        await store.close()
    return servings, calls


def test_the_ledger_holds_every_serving_after_sigterm(
    upstream: ScriptedUpstream, tmp_path: Path, launch_gateway: Callable[..., GatewayProcess]
) -> None:
    ledger = tmp_path / "ledger.db"
    config = write_config(tmp_path / "modelplane.yaml", upstream.base_url, ledger)
    gateway = launch_gateway(tmp_path, tmp_path / "home", config)
    version = httpx.get(gateway.url + "/admin/config", headers={"authorization": f"Bearer {ADMIN_KEY}"}).json()[
        "version"
    ]

    def serving(name: str) -> dict[str, str]:
        return {"X-Modelplane-Serving": name}

    upstream.script(ok("fine", prompt_tokens=1000, cached_tokens=200, completion_tokens=50))
    sdk(gateway).chat.completions.create(model="chat", messages=HI, extra_headers=serving("s-ok"))
    upstream.script(error(500))
    with pytest.raises(openai.InternalServerError):
        sdk(gateway).chat.completions.create(model="chat", messages=HI, extra_headers=serving("s-502"))
    with pytest.raises(openai.PermissionDeniedError):
        sdk(gateway).chat.completions.create(model="premium", messages=HI, extra_headers=serving("s-403"))
    upstream.script(ok("a b c", prompt_tokens=7, completion_tokens=3))
    list(
        sdk(gateway, ADMIN_KEY).chat.completions.create(
            model="premium",
            messages=HI,
            stream=True,
            extra_headers=serving("s-stream"),
        )
    )

    assert gateway.stop() == 0, gateway.stderr
    servings, calls = asyncio.run(_read_ledger(f"sqlite:///{ledger}"))
    by_serving = {row["serving_id"]: row for row in servings}
    assert set(by_serving) == {"s-ok", "s-502", "s-403", "s-stream"}
    assert all(row["config_version"] == version and version for row in servings)

    row = by_serving["s-ok"]
    assert (row["tenant"], row["tier"], row["feature"], row["operation"]) == ("acme", "default", "chat", "chat")
    assert (row["status"], row["http_status"], row["error_class"]) == ("ok", 200, None)
    assert (row["model"], row["provider"], row["stream"]) == ("small", "up", False)
    assert (row["input_tokens"], row["cached_input_tokens"], row["output_tokens"]) == (1000, 200, 50)
    assert row["cost_usd"] == pytest.approx(cost_of(1000, 200, 50))
    [call] = calls[row["id"]]
    assert (call["model"], call["response_model"], call["status"], call["error_class"]) == (
        "small",
        "gpt-up-small",
        "ok",
        None,
    )
    assert call["serving_id"] == "s-ok" and call["config_version"] == version
    assert call["cost_usd"] == pytest.approx(row["cost_usd"])

    row = by_serving["s-502"]
    assert (row["status"], row["http_status"], row["error_class"], row["model"]) == (
        "error",
        502,
        "server_error",
        "small",
    )
    assert row["cost_usd"] == 0 and row["input_tokens"] == 0
    [call] = calls[row["id"]]
    assert (call["status"], call["error_class"]) == ("error", "server_error")

    row = by_serving["s-403"]
    assert (row["tenant"], row["feature"], row["status"], row["http_status"]) == ("acme", "premium", "error", 403)
    assert calls[row["id"]] == []  # refused before any upstream call

    row = by_serving["s-stream"]
    assert (row["tenant"], row["tier"], row["feature"], row["model"]) == ("ops", "pro", "premium", "large")
    assert (row["status"], row["http_status"], row["stream"]) == ("ok", 200, True)
    assert (row["input_tokens"], row["output_tokens"]) == (7, 3)
    assert row["cost_usd"] == pytest.approx((7 * 2.5 + 3 * 10) / 1e6)
