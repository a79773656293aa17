"""The openai adapter over real HTTP against the scripted upstream."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest

from modelplane.errors import ErrorClass, ProviderError
from modelplane.providers.base import Answer, ChatRequest, Stream, Timeouts, Usage
from modelplane.providers.openai import OpenAIProvider
from upstream import ScriptedUpstream, embed, error, malformed, ok, slow, stall, stream_cut

JSON = dict[str, Any]


@pytest.fixture
async def upstream() -> AsyncIterator[ScriptedUpstream]:
    async with ScriptedUpstream() as up:
        yield up


@pytest.fixture
async def provider(upstream: ScriptedUpstream) -> AsyncIterator[OpenAIProvider]:
    adapter = OpenAIProvider("openai", base_url=upstream.base_url, api_key="sk-x")
    await adapter.start()
    yield adapter
    await adapter.aclose()


def chat(stream: bool = False, *, include_usage: bool = False, timeouts: Timeouts | None = None) -> ChatRequest:
    body: JSON = {"model": "client-name", "messages": [{"role": "user", "content": "Hi"}], "temperature": 0.2}
    if stream:
        body["stream"] = True
    if include_usage:
        body["stream_options"] = {"include_usage": True}
    return ChatRequest(body, "upstream-model", timeouts or Timeouts())


async def collect(reply: Stream) -> list[JSON]:
    return [orjson.loads(chunk) async for chunk in reply.chunks()]


def text_of(chunks: list[JSON]) -> str:
    return "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])


# ---------------------------------------------------------------- answers


async def test_plain_answer(upstream: ScriptedUpstream, provider: OpenAIProvider) -> None:
    upstream.script(ok("Bonjour!", prompt_tokens=100, completion_tokens=7, cached_tokens=60))
    request = chat()
    answer = await provider.chat(request)
    assert isinstance(answer, Answer)
    assert answer.body["choices"][0]["message"]["content"] == "Bonjour!"
    assert answer.body["choices"][0]["finish_reason"] == "stop"
    assert answer.model == "upstream-model"
    assert answer.usage == Usage(input_tokens=100, cached_input_tokens=60, output_tokens=7)
    assert answer.raw is not None and orjson.loads(answer.raw) == answer.body
    assert request.body["model"] == "client-name"  # the caller's dict is not mutated


async def test_the_upstream_receives_the_body_with_model_replaced_and_the_key(
    upstream: ScriptedUpstream, provider: OpenAIProvider
) -> None:
    await provider.chat(chat())
    received = upstream.requests[-1]
    assert received.path == "/v1/chat/completions"
    assert received.headers["authorization"] == "Bearer sk-x"
    assert received.json == {
        "model": "upstream-model",
        "messages": [{"role": "user", "content": "Hi"}],
        "temperature": 0.2,
    }


async def test_raw_is_the_upstreams_own_bytes(upstream: ScriptedUpstream, provider: OpenAIProvider) -> None:
    # Odd spacing and key order: a re-serialized body would differ from these bytes.
    sent = (
        b'{ "usage": {"prompt_tokens": 3, "completion_tokens": 2},  "id": "x1",'
        b' "choices": [ {"index": 0, "message": {"role": "assistant", "content": "yo"}, "finish_reason": "stop"} ],'
        b' "model": "reported-model" }'
    )
    upstream.script(error(200, body=sent))
    answer = await provider.chat(chat())
    assert isinstance(answer, Answer)
    assert answer.raw == sent
    assert answer.model == "reported-model"
    assert answer.usage == Usage(input_tokens=3, output_tokens=2)


# ---------------------------------------------------------------- streams


async def test_streaming_answer_reassembles_and_hides_usage_it_added(
    upstream: ScriptedUpstream, provider: OpenAIProvider
) -> None:
    upstream.script(ok("The quick brown fox", prompt_tokens=20, completion_tokens=4, cached_tokens=8))
    reply = await provider.chat(chat(stream=True))
    assert isinstance(reply, Stream)
    chunks = await collect(reply)
    assert text_of(chunks) == "The quick brown fox"
    assert all(chunk["choices"] for chunk in chunks)  # the usage-only chunk is not forwarded
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
    # The adapter asked for usage anyway, so the ledger can price the stream.
    assert upstream.requests[-1].json["stream_options"] == {"include_usage": True}
    assert upstream.requests[-1].json["model"] == "upstream-model"
    assert reply.usage == Usage(input_tokens=20, cached_input_tokens=8, output_tokens=4)
    assert reply.finish_reason == "stop"
    assert reply.first_token_at is not None


async def test_streaming_forwards_the_usage_chunk_when_asked(
    upstream: ScriptedUpstream, provider: OpenAIProvider
) -> None:
    upstream.script(ok("one two three", prompt_tokens=12, completion_tokens=3))
    reply = await provider.chat(chat(stream=True, include_usage=True))
    assert isinstance(reply, Stream)
    chunks = await collect(reply)
    assert text_of(chunks) == "one two three"
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"]["prompt_tokens"] == 12 and chunks[-1]["usage"]["completion_tokens"] == 3
    assert reply.usage == Usage(input_tokens=12, output_tokens=3)


async def test_stream_cut_midway_raises_after_the_first_chunks(
    upstream: ScriptedUpstream, provider: OpenAIProvider
) -> None:
    upstream.script(stream_cut(after_chunks=2))
    reply = await provider.chat(chat(stream=True))
    assert isinstance(reply, Stream)
    received: list[JSON] = []
    with pytest.raises(ProviderError) as caught:
        async for chunk in reply.chunks():
            received.append(orjson.loads(chunk))
    assert caught.value.error_class is ErrorClass.STREAM_CUT
    # What happened, in words; not aiohttp's `<TransferEncodingError: 400, message='Not enough data…'>`.
    assert caught.value.message == "upstream closed the stream before it ended"
    assert text_of(received) == "He" + "ll"  # "Hello!" is streamed as "He", "ll", "o!"
    assert len(received) == 3  # the role chunk and two content chunks
    assert reply.finish_reason is None


async def test_stall_before_the_first_chunk_times_out(upstream: ScriptedUpstream, provider: OpenAIProvider) -> None:
    upstream.script(stall(2.0))
    reply = await provider.chat(chat(stream=True, timeouts=Timeouts(first_token=0.3)))
    assert isinstance(reply, Stream)  # headers arrived; the silence comes after them
    with pytest.raises(ProviderError) as caught:
        await collect(reply)
    assert caught.value.error_class is ErrorClass.TIMEOUT
    assert reply.first_token_at is None


# ---------------------------------------------------------------- embeddings


async def test_embeddings(upstream: ScriptedUpstream, provider: OpenAIProvider) -> None:
    result = await provider.embed({"model": "client-name", "input": ["a b", "c"]}, "embed-model", Timeouts())
    assert [item["embedding"] for item in result.body["data"]] == [embed("a b"), embed("c")]
    assert result.usage == Usage(input_tokens=3)
    assert result.model == "embed-model"
    received = upstream.requests[-1]
    assert received.path == "/v1/embeddings"
    assert received.json == {"model": "embed-model", "input": ["a b", "c"]}
    assert received.headers["authorization"] == "Bearer sk-x"


# ---------------------------------------------------------------- errors


async def test_rate_limit_carries_retry_after(upstream: ScriptedUpstream, provider: OpenAIProvider) -> None:
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
        (
            400,
            "This model's maximum context length is 128000 tokens. However, you requested 130000 tokens.",
            ErrorClass.CONTEXT_LENGTH,
        ),
        (400, "Invalid value for 'temperature'", ErrorClass.BAD_REQUEST),
    ],
)
async def test_error_statuses_are_classified(
    upstream: ScriptedUpstream, provider: OpenAIProvider, status: int, message: str | None, expected: ErrorClass
) -> None:
    body = None if message is None else {"error": {"message": message, "type": "invalid_request_error"}}
    for stream in (False, True):  # a stream refuses before any chunk: the error raises from chat()
        upstream.script(error(status, body=body))
        with pytest.raises(ProviderError) as caught:
            await provider.chat(chat(stream=stream))
        assert caught.value.error_class is expected
        assert caught.value.status == status
        assert caught.value.retry_after is None
    assert (message or f"scripted error {status}") in caught.value.message


async def test_malformed_json_is_a_bad_response(upstream: ScriptedUpstream, provider: OpenAIProvider) -> None:
    upstream.script(malformed())
    with pytest.raises(ProviderError) as caught:
        await provider.chat(chat())
    assert caught.value.error_class is ErrorClass.BAD_RESPONSE


async def test_an_answer_without_choices_is_a_bad_response(
    upstream: ScriptedUpstream, provider: OpenAIProvider
) -> None:
    upstream.script(error(200, body={"id": "x", "object": "chat.completion"}))
    with pytest.raises(ProviderError) as caught:
        await provider.chat(chat())
    assert caught.value.error_class is ErrorClass.BAD_RESPONSE


async def test_slow_answer_past_the_total_timeout(upstream: ScriptedUpstream, provider: OpenAIProvider) -> None:
    upstream.script(slow(1.0))
    with pytest.raises(ProviderError) as caught:
        await provider.chat(chat(timeouts=Timeouts(total=0.3)))
    assert caught.value.error_class is ErrorClass.TIMEOUT
    assert caught.value.message == (
        "upstream timed out waiting for the response headers (the call's timeout.total of 0.3 s ran out)"
    )


async def test_no_response_headers_is_a_first_token_timeout_not_a_connect_one(
    upstream: ScriptedUpstream, provider: OpenAIProvider
) -> None:
    # The upstream accepts the connection at once, then sends nothing, headers included.
    upstream.script(slow(2.0))
    with pytest.raises(ProviderError) as caught:
        await provider.chat(chat(timeouts=Timeouts(connect=2, first_token=0.3, total=5)))
    assert caught.value.error_class is ErrorClass.TIMEOUT
    assert caught.value.message == (
        "upstream timed out waiting for the response headers (no byte within timeout.first_token: 0.3 s)"
    )


async def test_a_connect_that_never_completes_is_a_connect_timeout() -> None:
    # A listener whose accept queue is full: Linux drops further SYNs, so connect() hangs.
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(0)
        port = server.getsockname()[1]
        fillers = [socket.socket() for _ in range(8)]
        try:
            for filler in fillers:
                filler.setblocking(False)
                filler.connect_ex(("127.0.0.1", port))
            adapter = OpenAIProvider("openai", base_url=f"http://127.0.0.1:{port}/v1", api_key="sk-x")
            try:
                with pytest.raises(ProviderError) as caught:
                    await adapter.chat(chat(timeouts=Timeouts(connect=0.3, first_token=5, total=10)))
            finally:
                await adapter.aclose()
        finally:
            for filler in fillers:
                filler.close()
    assert caught.value.error_class is ErrorClass.TIMEOUT
    assert caught.value.message == "upstream timed out during connect (timeout.connect: 0.3 s)"


async def test_refused_connection() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    # Nothing listens on the port once the socket is closed.
    adapter = OpenAIProvider("openai", base_url=f"http://127.0.0.1:{port}/v1", api_key="sk-x")
    try:
        with pytest.raises(ProviderError) as caught:
            await adapter.chat(chat())
    finally:
        await adapter.aclose()
    assert caught.value.error_class is ErrorClass.CONNECTION


async def test_metadata_stays_in_the_gateway_unless_the_completion_is_stored(
    upstream: ScriptedUpstream, provider: OpenAIProvider
) -> None:
    # OpenAI answers 400 to `metadata` without `store`; routing rules read it, so it is the gateway's.
    upstream.script(ok("a"), ok("b"))
    request = chat()
    request.body["metadata"] = {"plan": "vip"}
    await provider.chat(request)
    assert "metadata" not in upstream.requests[-1].json
    assert request.body["metadata"] == {"plan": "vip"}  # the caller's body is left as it was
    request.body["store"] = True
    await provider.chat(request)
    assert upstream.requests[-1].json["metadata"] == {"plan": "vip"}
