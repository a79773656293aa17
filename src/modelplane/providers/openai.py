"""Any OpenAI-compatible server at `base_url`: OpenAI, vLLM, llama.cpp server, Ollama, …

The body passes through untouched but for `model` (and `metadata` without `store`, below);
answers pass back as the upstream's own bytes, parsed once to read usage.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import orjson

from modelplane.errors import ErrorClass, ProviderError
from modelplane.providers import http
from modelplane.providers.base import JSON, Answer, ChatRequest, Embeddings, Stream, Timeouts, Usage


def usage_from_openai(data: Any) -> Usage:
    """Read an OpenAI `usage` object, including cached and reasoning token details."""
    if not isinstance(data, dict):
        return Usage()
    prompt_details = data.get("prompt_tokens_details") or {}
    completion_details = data.get("completion_tokens_details") or {}
    return Usage(
        input_tokens=int(data.get("prompt_tokens") or 0),
        cached_input_tokens=int(prompt_details.get("cached_tokens") or 0),
        output_tokens=int(data.get("completion_tokens") or 0),
        reasoning_tokens=int(completion_details.get("reasoning_tokens") or 0),
    )


class OpenAIProvider(http.HttpProvider):
    """An OpenAI-compatible chat-completions and embeddings API."""

    kind = "openai"
    supports_embeddings = True
    # The body passes through: an upstream that cannot do these answers 400 itself.
    supports_choices = True
    supports_logprobs = True
    content_parts = None

    def __init__(
        self, name: str, *, base_url: str, api_key: str | None = None, headers: dict[str, str] | None = None
    ) -> None:
        fixed = {"content-type": "application/json"}
        if api_key:
            fixed["authorization"] = f"Bearer {api_key}"
        super().__init__(name, base_url=base_url, headers={**fixed, **(headers or {})})

    async def chat(self, request: ChatRequest) -> Answer | Stream:
        body = {**request.body, "model": request.model}
        if "metadata" in body and not body.get("store"):
            # The request's `metadata` is the gateway's to read (routing rules match on it); OpenAI
            # refuses it unless the completion is stored: "The 'metadata' parameter is only allowed
            # when 'store' is enabled." A stored completion keeps it, as OpenAI's own field.
            del body["metadata"]
        if request.stream:
            # Always ask for usage so the ledger can price the stream; the client only sees it if it asked.
            body["stream_options"] = {**(body.get("stream_options") or {}), "include_usage": True}
        response = await self.post("/chat/completions", body, request.timeouts)
        if request.stream:
            return _OpenAIStream(response, request.model, request.timeouts, forward_usage=request.include_usage)
        raw = await http.read_body(response, request.timeouts)
        first_byte = time.perf_counter()
        data = http.decode_json(raw)
        if not isinstance(data.get("choices"), list):
            raise ProviderError(ErrorClass.BAD_RESPONSE, "upstream answer has no `choices` list")
        return Answer(
            data, usage_from_openai(data.get("usage")), str(data.get("model") or request.model), raw, first_byte
        )

    async def embed(self, body: JSON, model: str, timeouts: Timeouts) -> Embeddings:
        response = await self.post("/embeddings", {**body, "model": model}, timeouts)
        data = http.decode_json(await http.read_body(response, timeouts))
        if not isinstance(data.get("data"), list):
            raise ProviderError(ErrorClass.BAD_RESPONSE, "upstream embeddings answer has no `data` list")
        return Embeddings(data, usage_from_openai(data.get("usage")), str(data.get("model") or model))


class _OpenAIStream(Stream):
    def __init__(
        self, response: aiohttp.ClientResponse, model: str, timeouts: Timeouts, *, forward_usage: bool
    ) -> None:
        super().__init__(model)
        self._response = response
        self._timeouts = timeouts
        self._forward_usage = forward_usage

    async def chunks(self) -> AsyncIterator[bytes]:
        done = False
        try:
            async for _event, data in http.iter_sse(self._response, self._timeouts):
                if data == b"[DONE]":
                    done = True
                    break
                chunk = self._read(data)
                if chunk.get("choices") or self._forward_usage:
                    yield data
        finally:
            self._response.release()
        if not done:
            raise ProviderError(ErrorClass.STREAM_CUT, "upstream stream ended without [DONE]")

    def _read(self, data: bytes) -> JSON:
        try:
            chunk = orjson.loads(data)
        except orjson.JSONDecodeError as exc:
            raise ProviderError(ErrorClass.STREAM_CUT, f"upstream sent a malformed stream chunk: {exc}") from exc
        if not isinstance(chunk, dict):
            raise ProviderError(ErrorClass.STREAM_CUT, "upstream sent a stream chunk that is not an object")
        if chunk.get("error"):
            raise ProviderError(ErrorClass.STREAM_CUT, f"upstream reported an error mid-stream: {chunk['error']}")
        if chunk.get("model"):
            self.model = str(chunk["model"])
        if chunk.get("usage"):
            self.usage = usage_from_openai(chunk["usage"])
        for choice in chunk.get("choices") or ():
            if choice.get("finish_reason"):
                self.finish_reason = str(choice["finish_reason"])
            if choice.get("delta"):
                self.mark_first_token()
        return chunk

    async def aclose(self) -> None:
        self._response.close()
