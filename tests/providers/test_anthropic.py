"""The anthropic adapter: pure wire translation, then real HTTP against the scripted upstream."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest

from modelplane.errors import ErrorClass, ProviderError
from modelplane.providers.anthropic import AnthropicProvider
from modelplane.providers.anthropic_wire import (
    DEFAULT_MAX_TOKENS,
    ChunkTranslator,
    finish_reason,
    to_chat_completion,
    to_messages_request,
    to_usage,
)
from modelplane.providers.base import Answer, ChatRequest, Stream, Timeouts, Usage
from upstream import ScriptedUpstream, error, malformed, ok, slow, stall, stream_cut

JSON = dict[str, Any]

CONVERSATION: list[JSON] = [
    {"role": "system", "content": "Be brief."},
    {"role": "developer", "content": [{"type": "text", "text": "Answer in French."}]},
    {"role": "user", "content": "What is the weather in Paris?"},
    {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": "call_1",
                "type": "function",
                "function": {"name": "weather", "arguments": '{"city": "Paris"}'},
            },
            {"id": "call_2", "type": "function", "function": {"name": "time", "arguments": "{}"}},
        ],
    },
    {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
    {"role": "tool", "tool_call_id": "call_2", "content": [{"type": "text", "text": "noon"}]},
    {"role": "user", "content": "And tomorrow?"},
]


# ---------------------------------------------------------------- request translation


def test_system_and_developer_messages_become_the_top_level_system() -> None:
    request = to_messages_request({"messages": CONVERSATION}, "claude-x")
    assert request["system"] == "Be brief.\n\nAnswer in French."
    assert request["model"] == "claude-x"
    assert all(turn["role"] in ("user", "assistant") for turn in request["messages"])


def test_tool_calls_become_tool_use_and_tool_results_merge_into_one_user_turn() -> None:
    messages = to_messages_request({"messages": CONVERSATION}, "claude-x")["messages"]
    assert [turn["role"] for turn in messages] == ["user", "assistant", "user"]
    assert messages[1]["content"] == [
        {"type": "tool_use", "id": "call_1", "name": "weather", "input": {"city": "Paris"}},
        {"type": "tool_use", "id": "call_2", "name": "time", "input": {}},
    ]
    assert messages[2]["content"] == [
        {"type": "tool_result", "tool_use_id": "call_1", "content": "sunny"},
        {"type": "tool_result", "tool_use_id": "call_2", "content": "noon"},
        {"type": "text", "text": "And tomorrow?"},
    ]


def test_consecutive_user_messages_merge_and_empty_turns_are_dropped() -> None:
    body = {
        "messages": [
            {"role": "user", "content": "one"},
            {"role": "user", "content": "two"},
            {"role": "assistant", "content": ""},
            {"role": "user", "content": "three"},
        ]
    }
    messages = to_messages_request(body, "m")["messages"]
    assert messages == [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "one"},
                {"type": "text", "text": "two"},
                {"type": "text", "text": "three"},
            ],
        }
    ]
    assert "system" not in to_messages_request(body, "m")


def test_image_parts_become_image_blocks() -> None:
    content = [
        {"type": "text", "text": "what is this?"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}},
    ]
    blocks = to_messages_request({"messages": [{"role": "user", "content": content}]}, "m")["messages"][0][
        "content"
    ]
    assert blocks[1] == {
        "type": "image",
        "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="},
    }
    assert blocks[2] == {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}}


def test_sampling_parameters_are_renamed_and_max_tokens_defaults() -> None:
    body = {
        "messages": [],
        "max_tokens": 50,
        "max_completion_tokens": 70,
        "temperature": 1.7,
        "top_p": 0.9,
        "stop": "END",
        "stream": True,
        "user": "u-1",
    }
    request = to_messages_request(body, "m")
    assert request["max_tokens"] == 70
    assert request["temperature"] == 1.0  # OpenAI's 0..2 clamped into Anthropic's 0..1
    assert request["top_p"] == 0.9
    assert request["stop_sequences"] == ["END"]
    assert request["stream"] is True
    assert request["metadata"] == {"user_id": "u-1"}
    assert to_messages_request({"messages": []}, "m")["max_tokens"] == DEFAULT_MAX_TOKENS


def test_function_tools_become_anthropic_tools() -> None:
    schema = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
    body = {
        "messages": [],
        "tools": [
            {
                "type": "function",
                "function": {"name": "weather", "description": "Get weather", "parameters": schema},
            },
            {"type": "function", "function": {"name": "noop"}},
        ],
    }
    assert to_messages_request(body, "m")["tools"] == [
        {"name": "weather", "description": "Get weather", "input_schema": schema},
        {"name": "noop", "input_schema": {"type": "object", "properties": {}}},
    ]


@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        ("auto", {"type": "auto"}),
        ("none", {"type": "none"}),
        ("required", {"type": "any"}),
        ({"type": "function", "function": {"name": "weather"}}, {"type": "tool", "name": "weather"}),
    ],
)
def test_tool_choice_maps(choice: Any, expected: JSON) -> None:
    body = {
        "messages": [],
        "tools": [{"type": "function", "function": {"name": "weather"}}],
        "tool_choice": choice,
    }
    assert to_messages_request(body, "m")["tool_choice"] == expected


def test_parallel_tool_calls_false_disables_parallel_tool_use() -> None:
    body = {
        "messages": [],
        "tools": [{"type": "function", "function": {"name": "w"}}],
        "parallel_tool_calls": False,
    }
    assert to_messages_request(body, "m")["tool_choice"] == {
        "type": "auto",
        "disable_parallel_tool_use": True,
    }


def test_unparseable_tool_arguments_are_a_client_fault() -> None:
    body = {
        "messages": [
            {
                "role": "assistant",
                "tool_calls": [
                    {"id": "c", "type": "function", "function": {"name": "f", "arguments": "{not json"}}
                ],
            }
        ]
    }
    with pytest.raises(ProviderError) as caught:
        to_messages_request(body, "m")
    assert caught.value.error_class is ErrorClass.BAD_REQUEST
    assert caught.value.client_fault


def test_the_callers_body_is_not_mutated() -> None:
    body = {"messages": [{"role": "user", "content": "hi"}, {"role": "user", "content": "again"}]}
    snapshot = orjson.dumps(body)
    to_messages_request(body, "m")
    assert orjson.dumps(body) == snapshot


# ---------------------------------------------------------------- response translation


def test_text_and_tool_use_blocks_become_a_chat_completion() -> None:
    message = {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": "claude-x",
        "content": [
            {"type": "text", "text": "Let me "},
            {"type": "text", "text": "check."},
            {"type": "tool_use", "id": "toolu_1", "name": "weather", "input": {"city": "Paris"}},
        ],
        "stop_reason": "tool_use",
        "usage": {"input_tokens": 12, "output_tokens": 7},
    }
    body, usage = to_chat_completion(message, created=1700000000)
    choice = body["choices"][0]
    assert (body["id"], body["object"], body["created"], body["model"]) == (
        "msg_1",
        "chat.completion",
        1700000000,
        "claude-x",
    )
    assert choice["message"]["content"] == "Let me check."
    assert choice["message"]["tool_calls"] == [
        {
            "id": "toolu_1",
            "type": "function",
            "function": {"name": "weather", "arguments": '{"city":"Paris"}'},
        }
    ]
    assert choice["finish_reason"] == "tool_calls"
    assert body["usage"]["prompt_tokens"] == 12 and body["usage"]["completion_tokens"] == 7
    assert usage == Usage(input_tokens=12, output_tokens=7)


@pytest.mark.parametrize(
    ("stop_reason", "expected"),
    [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("max_tokens", "length"),
        ("tool_use", "tool_calls"),
        ("refusal", "content_filter"),
        (None, "stop"),
        ("something_new", "stop"),
    ],
)
def test_stop_reasons_map_to_finish_reasons(stop_reason: str | None, expected: str) -> None:
    assert finish_reason(stop_reason) == expected


def test_usage_counts_cache_reads_and_writes_as_input() -> None:
    usage = to_usage(
        {
            "input_tokens": 10,
            "cache_read_input_tokens": 60,
            "cache_creation_input_tokens": 30,
            "output_tokens": 5,
        }
    )
    assert usage == Usage(input_tokens=100, cached_input_tokens=60, cache_write_tokens=30, output_tokens=5)
    body, _ = to_chat_completion(
        {"content": [], "usage": {"input_tokens": 10, "cache_read_input_tokens": 60, "output_tokens": 5}},
        created=0,
    )
    assert body["usage"]["prompt_tokens"] == 70
    assert body["usage"]["prompt_tokens_details"] == {"cached_tokens": 60}
    assert body["usage"]["total_tokens"] == 75


def test_chunk_translator_streams_tool_call_deltas_by_index() -> None:
    translator = ChunkTranslator("m", 0, include_usage=False)
    events: list[JSON] = [
        {
            "type": "message_start",
            "message": {"id": "msg_9", "model": "claude-x", "usage": {"input_tokens": 3}},
        },
        {
            "type": "content_block_start",
            "index": 1,
            "content_block": {"type": "tool_use", "id": "toolu_1", "name": "weather", "input": {}},
        },
        {
            "type": "content_block_delta",
            "index": 1,
            "delta": {"type": "input_json_delta", "partial_json": '{"ci'},
        },
        {
            "type": "content_block_delta",
            "index": 1,
            "delta": {"type": "input_json_delta", "partial_json": 'ty":1}'},
        },
        {"type": "message_delta", "delta": {"stop_reason": "tool_use"}, "usage": {"output_tokens": 9}},
        {"type": "message_stop"},
    ]
    chunks = [chunk for event in events for chunk in translator.feed(event)]
    deltas = [chunk["choices"][0]["delta"] for chunk in chunks]
    assert deltas[0] == {"role": "assistant", "content": ""}
    assert deltas[1]["tool_calls"][0] == {
        "index": 0,
        "id": "toolu_1",
        "type": "function",
        "function": {"name": "weather", "arguments": ""},
    }
    arguments = "".join(d["tool_calls"][0]["function"]["arguments"] for d in deltas[1:] if "tool_calls" in d)
    assert arguments == '{"city":1}'
    assert chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"
    assert {chunk["id"] for chunk in chunks} == {"msg_9"}
    assert translator.done and translator.usage == Usage(input_tokens=3, output_tokens=9)


def test_chunk_translator_raises_stream_cut_on_an_error_event() -> None:
    translator = ChunkTranslator("m", 0, include_usage=False)
    with pytest.raises(ProviderError) as caught:
        translator.feed({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}})
    assert caught.value.error_class is ErrorClass.STREAM_CUT
    assert "overloaded_error: Overloaded" in caught.value.message


# ---------------------------------------------------------------- over real HTTP


@pytest.fixture
async def upstream() -> AsyncIterator[ScriptedUpstream]:
    async with ScriptedUpstream() as up:
        yield up


@pytest.fixture
async def provider(upstream: ScriptedUpstream) -> AsyncIterator[AnthropicProvider]:
    adapter = AnthropicProvider(
        "claude", base_url=upstream.base_url, api_key="sk-ant-test", headers={"anthropic-beta": "test-beta"}
    )
    await adapter.start()
    yield adapter
    await adapter.aclose()


def chat(
    stream: bool = False,
    *,
    include_usage: bool = False,
    timeouts: Timeouts | None = None,
    messages: list[JSON] | None = None,
) -> ChatRequest:
    body: JSON = {
        "model": "client-name",
        "messages": messages
        or [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Hi"},
            {"role": "user", "content": "?"},
        ],
    }
    if stream:
        body["stream"] = True
    if include_usage:
        body["stream_options"] = {"include_usage": True}
    return ChatRequest(body, "claude-test", timeouts or Timeouts())


async def collect(reply: Stream) -> list[JSON]:
    return [orjson.loads(chunk) async for chunk in reply.chunks()]


def text_of(chunks: list[JSON]) -> str:
    return "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])


async def test_plain_answer(upstream: ScriptedUpstream, provider: AnthropicProvider) -> None:
    upstream.script(
        ok("Bonjour!", prompt_tokens=100, completion_tokens=7, cached_tokens=60, cache_creation_tokens=30)
    )
    answer = await provider.chat(chat())
    assert isinstance(answer, Answer)
    assert answer.body["choices"][0]["message"]["content"] == "Bonjour!"
    assert answer.body["choices"][0]["finish_reason"] == "stop"
    assert answer.model == "claude-test"
    assert answer.usage == Usage(
        input_tokens=100, cached_input_tokens=60, cache_write_tokens=30, output_tokens=7
    )
    assert answer.body["usage"]["prompt_tokens_details"]["cached_tokens"] == 60


async def test_the_upstream_receives_a_messages_api_request(
    upstream: ScriptedUpstream, provider: AnthropicProvider
) -> None:
    await provider.chat(chat())
    received = upstream.requests[-1]
    assert received.path == "/v1/messages"
    assert received.headers["x-api-key"] == "sk-ant-test"
    assert received.headers["anthropic-version"] == "2023-06-01"
    assert received.headers["anthropic-beta"] == "test-beta"
    assert received.json["model"] == "claude-test"
    assert received.json["system"] == "Be brief."
    assert received.json["max_tokens"] == DEFAULT_MAX_TOKENS
    assert received.json["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "Hi"}, {"type": "text", "text": "?"}]}
    ]
    assert upstream.count("/messages") == 1


async def test_tool_calls_come_back_as_openai_tool_calls(
    upstream: ScriptedUpstream, provider: AnthropicProvider
) -> None:
    upstream.script(ok("", tool_calls=[{"id": "toolu_7", "name": "weather", "arguments": {"city": "Oslo"}}]))
    answer = await provider.chat(chat())
    assert isinstance(answer, Answer)
    message = answer.body["choices"][0]["message"]
    assert message["content"] is None
    assert message["tool_calls"][0]["function"] == {"name": "weather", "arguments": '{"city":"Oslo"}'}
    assert answer.body["choices"][0]["finish_reason"] == "tool_calls"


async def test_streaming_answer_reassembles(upstream: ScriptedUpstream, provider: AnthropicProvider) -> None:
    upstream.script(ok("The quick brown fox", prompt_tokens=20, completion_tokens=4, cached_tokens=8))
    reply = await provider.chat(chat(stream=True, include_usage=True))
    assert isinstance(reply, Stream)
    chunks = await collect(reply)
    assert text_of(chunks) == "The quick brown fox"
    assert len([c for c in chunks if c["choices"] and c["choices"][0]["delta"].get("content")]) == 4
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop"
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"]["prompt_tokens"] == 20 and chunks[-1]["usage"]["completion_tokens"] == 4
    assert reply.usage == Usage(input_tokens=20, cached_input_tokens=8, output_tokens=4)
    assert reply.finish_reason == "stop"
    assert reply.first_token_at is not None
    assert upstream.requests[-1].json["stream"] is True


async def test_stream_without_include_usage_has_no_usage_chunk(
    upstream: ScriptedUpstream, provider: AnthropicProvider
) -> None:
    reply = await provider.chat(chat(stream=True))
    assert isinstance(reply, Stream)
    chunks = await collect(reply)
    assert all(chunk["choices"] and "usage" not in chunk for chunk in chunks)
    assert text_of(chunks) == "Hello!"
    assert reply.usage.output_tokens == 5  # usage is still recorded for the ledger


async def test_streamed_tool_call(upstream: ScriptedUpstream, provider: AnthropicProvider) -> None:
    upstream.script(ok("", tool_calls=[{"id": "toolu_1", "name": "weather", "arguments": {"city": "Oslo"}}]))
    reply = await provider.chat(chat(stream=True))
    assert isinstance(reply, Stream)
    chunks = await collect(reply)
    calls = [
        c["choices"][0]["delta"]["tool_calls"][0] for c in chunks if "tool_calls" in c["choices"][0]["delta"]
    ]
    assert calls[0]["id"] == "toolu_1" and calls[0]["function"]["name"] == "weather"
    assert orjson.loads("".join(call["function"]["arguments"] for call in calls)) == {"city": "Oslo"}
    assert reply.finish_reason == "tool_calls"


async def test_stream_cut_midway_raises_after_the_first_chunks(
    upstream: ScriptedUpstream, provider: AnthropicProvider
) -> None:
    upstream.script(stream_cut(after_chunks=2))
    reply = await provider.chat(chat(stream=True))
    assert isinstance(reply, Stream)
    received: list[JSON] = []
    with pytest.raises(ProviderError) as caught:
        async for chunk in reply.chunks():
            received.append(orjson.loads(chunk))
    assert caught.value.error_class is ErrorClass.STREAM_CUT
    assert caught.value.message == "upstream closed the stream before it ended"
    assert text_of(received) == "He" + "ll"  # "Hello!" is streamed as "He", "ll", "o!"
    assert reply.finish_reason is None


async def test_rate_limit_carries_retry_after(
    upstream: ScriptedUpstream, provider: AnthropicProvider
) -> None:
    upstream.script(error(429, headers={"retry-after": "2"}))
    with pytest.raises(ProviderError) as caught:
        await provider.chat(chat())
    assert caught.value.error_class is ErrorClass.RATE_LIMIT
    assert caught.value.retry_after == 2.0
    assert caught.value.status == 429


@pytest.mark.parametrize(
    ("status", "message", "expected"),
    [
        (401, None, ErrorClass.AUTH),
        (500, None, ErrorClass.SERVER_ERROR),
        (529, None, ErrorClass.SERVER_ERROR),
        (400, "prompt is too long: 210000 tokens > 200000 maximum", ErrorClass.CONTEXT_LENGTH),
        (400, "messages: roles must alternate", ErrorClass.BAD_REQUEST),
    ],
)
async def test_error_statuses_are_classified(
    upstream: ScriptedUpstream,
    provider: AnthropicProvider,
    status: int,
    message: str | None,
    expected: ErrorClass,
) -> None:
    body = (
        None
        if message is None
        else {"type": "error", "error": {"type": "invalid_request_error", "message": message}}
    )
    for stream in (False, True):  # a stream refuses before any chunk: the error raises from chat()
        upstream.script(error(status, body=body))
        with pytest.raises(ProviderError) as caught:
            await provider.chat(chat(stream=stream))
        assert caught.value.error_class is expected
        assert caught.value.status == status
    if message is not None:
        assert message in caught.value.message


async def test_malformed_json_is_a_bad_response(
    upstream: ScriptedUpstream, provider: AnthropicProvider
) -> None:
    upstream.script(malformed())
    with pytest.raises(ProviderError) as caught:
        await provider.chat(chat())
    assert caught.value.error_class is ErrorClass.BAD_RESPONSE


async def test_slow_answer_past_the_total_timeout(
    upstream: ScriptedUpstream, provider: AnthropicProvider
) -> None:
    upstream.script(slow(1.0))
    with pytest.raises(ProviderError) as caught:
        await provider.chat(chat(timeouts=Timeouts(total=0.3)))
    assert caught.value.error_class is ErrorClass.TIMEOUT


async def test_stall_before_the_first_chunk_times_out(
    upstream: ScriptedUpstream, provider: AnthropicProvider
) -> None:
    upstream.script(stall(2.0))
    reply = await provider.chat(chat(stream=True, timeouts=Timeouts(first_token=0.3)))
    assert isinstance(reply, Stream)  # headers arrived; the silence comes after them
    with pytest.raises(ProviderError) as caught:
        await collect(reply)
    assert caught.value.error_class is ErrorClass.TIMEOUT
    assert reply.first_token_at is None


async def test_refused_connection() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    # Nothing listens on the port once the socket is closed.
    adapter = AnthropicProvider("claude", base_url=f"http://127.0.0.1:{port}/v1", api_key="k")
    try:
        with pytest.raises(ProviderError) as caught:
            await adapter.chat(chat())
    finally:
        await adapter.aclose()
    assert caught.value.error_class is ErrorClass.CONNECTION
