"""The scripted upstream itself, checked against the official SDKs so its wire shapes stay honest."""

from __future__ import annotations

from collections.abc import Iterator

import aiohttp
import anthropic
import httpx
import openai
import pytest

from upstream import ScriptedUpstream, error, ok, stream_cut


@pytest.fixture(scope="module")
def up() -> Iterator[ScriptedUpstream]:
    with ScriptedUpstream.in_thread() as upstream:
        yield upstream


@pytest.fixture
def openai_client(up: ScriptedUpstream) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=up.base_url, api_key="sk-test", max_retries=0) as client:
        yield client


@pytest.fixture
def anthropic_client(up: ScriptedUpstream) -> Iterator[anthropic.Anthropic]:
    root = up.base_url.removesuffix("/v1")  # the SDK adds /v1 itself
    with anthropic.Anthropic(base_url=root, api_key="sk-ant-test", max_retries=0) as client:
        yield client


USER = [{"role": "user", "content": "Hi"}]


def test_openai_sdk_reads_a_completion_with_cached_usage(
    up: ScriptedUpstream, openai_client: openai.OpenAI
) -> None:
    up.script(ok("Hello there", prompt_tokens=40, completion_tokens=3, cached_tokens=32))
    completion = openai_client.chat.completions.create(model="m", messages=USER)  # type: ignore[arg-type]
    assert completion.choices[0].message.content == "Hello there"
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage is not None
    assert completion.usage.prompt_tokens == 40 and completion.usage.total_tokens == 43
    assert completion.usage.prompt_tokens_details is not None
    assert completion.usage.prompt_tokens_details.cached_tokens == 32
    assert up.requests[-1].json["messages"] == USER
    assert up.requests[-1].headers["authorization"] == "Bearer sk-test"


def test_openai_sdk_stream_with_usage_chunk(up: ScriptedUpstream, openai_client: openai.OpenAI) -> None:
    up.script(ok("one two three four", completion_tokens=4))
    stream = openai_client.chat.completions.create(
        model="m", messages=USER, stream=True, stream_options={"include_usage": True}
    )  # type: ignore[arg-type]
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "one two three four"
    assert len([c for c in chunks if c.choices and c.choices[0].delta.content]) == 4
    assert chunks[-2].choices[0].finish_reason == "stop"
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == 4


def test_openai_stream_without_include_usage_has_no_usage_chunk(
    up: ScriptedUpstream, openai_client: openai.OpenAI
) -> None:
    chunks = list(openai_client.chat.completions.create(model="m", messages=USER, stream=True))  # type: ignore[arg-type]
    assert all(chunk.choices and chunk.usage is None for chunk in chunks)


def test_openai_sdk_sees_errors_and_embeddings_and_models(
    up: ScriptedUpstream, openai_client: openai.OpenAI
) -> None:
    up.script(error(401))
    with pytest.raises(openai.AuthenticationError):
        openai_client.chat.completions.create(model="m", messages=USER)  # type: ignore[arg-type]
    first = openai_client.embeddings.create(model="e", input=["alpha", "beta"])
    again = openai_client.embeddings.create(model="e", input="alpha")
    assert len(first.data) == 2 and len(first.data[0].embedding) == 8
    assert first.data[0].embedding == again.data[0].embedding != first.data[1].embedding
    assert "scripted-model" in [model.id for model in openai_client.models.list()]


def test_anthropic_sdk_reads_a_message_with_cache_usage(
    up: ScriptedUpstream, anthropic_client: anthropic.Anthropic
) -> None:
    up.script(
        ok("Bonjour", prompt_tokens=100, completion_tokens=2, cached_tokens=60, cache_creation_tokens=30)
    )
    message = anthropic_client.messages.create(model="claude-x", max_tokens=10, messages=USER)  # type: ignore[arg-type]
    assert message.content[0].type == "text" and message.content[0].text == "Bonjour"
    assert message.stop_reason == "end_turn" and message.model == "claude-x"
    assert (
        message.usage.input_tokens,
        message.usage.cache_read_input_tokens,
        message.usage.cache_creation_input_tokens,
        message.usage.output_tokens,
    ) == (10, 60, 30, 2)
    headers = up.requests[-1].headers
    # SDK 2.x sends the key as a bearer token; older ones (and our adapter) use x-api-key.
    assert "sk-ant-test" in (
        headers.get("x-api-key"),
        headers.get("authorization", "").removeprefix("Bearer "),
    )


def test_anthropic_sdk_stream_accumulates_text_and_tool_use(
    up: ScriptedUpstream, anthropic_client: anthropic.Anthropic
) -> None:
    up.script(ok("Checking the weather", tool_calls=[{"name": "weather", "arguments": {"city": "Oslo"}}]))
    with anthropic_client.messages.stream(model="c", max_tokens=10, messages=USER) as stream:  # type: ignore[arg-type]
        events = [event.type for event in stream]
        final = stream.get_final_message()
    assert events[0] == "message_start" and events[-1] == "message_stop"
    assert final.content[0].type == "text" and final.content[0].text == "Checking the weather"
    assert final.content[1].type == "tool_use" and final.content[1].input == {"city": "Oslo"}
    assert final.stop_reason == "tool_use" and final.usage.output_tokens == 5


def test_anthropic_sdk_sees_the_anthropic_error_shape(
    up: ScriptedUpstream, anthropic_client: anthropic.Anthropic
) -> None:
    up.script(error(429, headers={"retry-after": "2"}))
    with pytest.raises(anthropic.RateLimitError) as caught:
        anthropic_client.messages.create(model="c", max_tokens=10, messages=USER)  # type: ignore[arg-type]
    assert caught.value.response.headers["retry-after"] == "2"
    assert caught.value.body == {
        "type": "error",
        "error": {"type": "rate_limit_error", "message": "scripted error 429"},
    }


def test_a_cut_stream_breaks_the_sdk_client(up: ScriptedUpstream, openai_client: openai.OpenAI) -> None:
    up.script(stream_cut(after_chunks=1))
    texts: list[str] = []
    with pytest.raises(openai.APIConnectionError) as caught:
        for chunk in openai_client.chat.completions.create(model="m", messages=USER, stream=True):  # type: ignore[arg-type]
            texts.append(chunk.choices[0].delta.content or "")
    assert "".join(texts) == "He"
    # A broken body, not a refusal. (The SDK may bundle its own httpx fork, so match by name.)
    assert type(caught.value.__cause__).__name__ == "RemoteProtocolError"


def test_script_is_consumed_in_order_then_defaults_to_ok(up: ScriptedUpstream) -> None:
    before = up.count()
    up.script(error(500), error(503))
    statuses = [
        httpx.post(f"{up.base_url}/chat/completions", json={"messages": USER}).status_code for _ in range(3)
    ]
    assert statuses == [500, 503, 200]
    assert up.count() == before + 3


async def test_async_mode_serves_in_the_running_loop() -> None:
    async with ScriptedUpstream() as upstream, aiohttp.ClientSession() as session:
        upstream.script(ok("async"))
        async with session.post(f"{upstream.base_url}/chat/completions", json={"messages": USER}) as response:
            body = await response.json()
    assert body["choices"][0]["message"]["content"] == "async"
    assert upstream.count() == 1 and upstream.requests[0].path == "/v1/chat/completions"
