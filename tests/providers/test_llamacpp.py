"""The llamacpp adapter with the real bundled model: the answer's text, JSON schemas, llama.cpp's log."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import orjson
import pytest

from modelplane.errors import UsageError
from modelplane.providers.base import Answer, ChatRequest, Stream
from modelplane.providers.llamacpp import LlamaCppProvider, chat_format_for, resolve_model_path

pytestmark = pytest.mark.localmodel

SPEC = "bundled:gemma-3-270m"
JSON = dict[str, Any]
PERSON = {
    "type": "object",
    "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
    "required": ["name", "age"],
    "additionalProperties": False,
}


@pytest.fixture(scope="module")
def model_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return resolve_model_path(SPEC, tmp_path_factory.mktemp("home"))


@pytest.fixture(scope="module")
def provider(model_path: Path) -> Iterator[LlamaCppProvider]:
    adapter = LlamaCppProvider("local", model_path=model_path, chat_format=chat_format_for(SPEC))
    asyncio.run(adapter.start())
    yield adapter
    asyncio.run(adapter.aclose())


def ask(provider: LlamaCppProvider, question: str, **body: Any) -> tuple[str, str | None]:
    """The whole answer and its finish reason."""
    request = ChatRequest({"messages": [{"role": "user", "content": question}], "temperature": 0, **body}, "local")
    answer = asyncio.run(provider.chat(request))
    assert isinstance(answer, Answer)
    choice = answer.body["choices"][0]
    return choice["message"]["content"], choice["finish_reason"]


def ask_streamed(provider: LlamaCppProvider, question: str, **body: Any) -> tuple[list[str], str | None]:
    """The streamed answer's content deltas and the finish reason its last chunk gave."""
    request = ChatRequest(
        {"messages": [{"role": "user", "content": question}], "temperature": 0, "stream": True, **body}, "local"
    )

    async def collect() -> list[JSON]:
        stream = await provider.chat(request)
        assert isinstance(stream, Stream)
        return [orjson.loads(chunk) async for chunk in stream.chunks()]

    choices = [chunk["choices"][0] for chunk in asyncio.run(collect()) if chunk["choices"]]
    finish_reasons = [choice["finish_reason"] for choice in choices if choice["finish_reason"]]
    assert len(finish_reasons) == 1 and choices[-1]["finish_reason"], "one finish reason, on the last chunk"
    deltas = [choice["delta"]["content"] for choice in choices if choice["delta"].get("content")]
    return deltas, finish_reasons[0]


def test_the_answer_does_not_start_with_a_space(provider: LlamaCppProvider) -> None:
    content, finish_reason = ask(provider, "What is the capital of France?", max_tokens=24)
    assert "Paris" in content and content == content.lstrip() and finish_reason == "stop"
    deltas, finish_reason = ask_streamed(provider, "What is the capital of France?", max_tokens=24)
    assert deltas[0] == deltas[0].lstrip() and "".join(deltas) == content and finish_reason == "stop"


def test_max_tokens_inside_the_next_turn_leaks_no_part_of_its_label(provider: LlamaCppProvider) -> None:
    # At temperature 0 the model answers "Hello", then writes "\nUser" when cut at 3 tokens.
    assert ask(provider, "Hello", max_tokens=3) == ("Hello", "length")
    deltas, finish_reason = ask_streamed(provider, "Hello", max_tokens=3)
    assert "".join(deltas) == "Hello" and finish_reason == "length"


def test_a_speaker_the_model_invents_ends_the_answer(provider: LlamaCppProvider) -> None:
    # At temperature 0 the model goes on with "\nStudent: Write one sentence." until max_tokens.
    content, finish_reason = ask(provider, "Write one sentence.", max_tokens=60)
    assert content and "\n" not in content and ":" not in content and finish_reason == "stop"
    deltas, finish_reason = ask_streamed(provider, "Write one sentence.", max_tokens=60)
    assert "".join(deltas) == content and finish_reason == "stop"


def test_generation_stops_at_the_invented_speaker(provider: LlamaCppProvider) -> None:
    request = ChatRequest(
        {"messages": [{"role": "user", "content": "Write one sentence."}], "temperature": 0, "max_tokens": 60}, "local"
    )
    answer = asyncio.run(provider.chat(request))
    assert isinstance(answer, Answer)
    assert answer.usage.output_tokens < 20, "generated up to max_tokens and cut afterwards"


def test_a_json_schema_response_format_gets_an_answer_that_validates(provider: LlamaCppProvider) -> None:
    response_format = {"type": "json_schema", "json_schema": {"name": "person", "schema": PERSON, "strict": True}}
    content, finish_reason = ask(
        provider, "Give the name and age of a person.", max_tokens=64, response_format=response_format
    )
    assert finish_reason == "stop"
    jsonschema.validate(orjson.loads(content), PERSON)


def test_loading_the_model_prints_no_llama_cpp_chatter(model_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    adapter = LlamaCppProvider("local", model_path=model_path, chat_format=chat_format_for(SPEC))
    asyncio.run(adapter.start())
    asyncio.run(adapter.aclose())
    assert capfd.readouterr().err == ""  # llama.cpp used to print "llama_kv_cache_iswa: using full-size SWA cache"


def test_a_broken_model_file_is_a_usage_error_and_llama_cpp_says_why(
    tmp_path: Path, model_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    broken = tmp_path / "broken.gguf"
    with model_path.open("rb") as model:
        broken.write_bytes(model.read(100_000))
    adapter = LlamaCppProvider("local", model_path=broken)
    with caplog.at_level(logging.ERROR, "modelplane.llamacpp"), pytest.raises(UsageError, match="cannot load"):
        asyncio.run(adapter.start())
    assert any(record.getMessage().startswith("llama.cpp: ") for record in caplog.records)
