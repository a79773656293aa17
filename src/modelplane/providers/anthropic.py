"""The `anthropic` provider: Anthropic's Messages API behind the OpenAI chat-completions seam.

The wire translation lives in `anthropic_wire` as pure functions; this module owns the
session, the HTTP exchange and error classification (via `providers.http`).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import aiohttp
import orjson

from modelplane.errors import ErrorClass, ProviderError
from modelplane.providers import http
from modelplane.providers.anthropic_wire import ChunkTranslator, to_chat_completion, to_messages_request
from modelplane.providers.base import Answer, ChatRequest, Reply, Stream, Timeouts


class AnthropicProvider(http.HttpProvider):
    """Anthropic's Messages API (`POST {base_url}/messages`)."""

    kind = "anthropic"
    content_parts = frozenset({"text", "image_url"})  # the Messages API has no `n` and no logprobs

    def __init__(
        self,
        name: str,
        *,
        base_url: str = "https://api.anthropic.com/v1",
        api_key: str | None,
        headers: dict[str, str] | None = None,
        version: str = "2023-06-01",
    ) -> None:
        fixed = {"anthropic-version": version, "content-type": "application/json"}
        if api_key:
            fixed["x-api-key"] = api_key
        super().__init__(name, base_url=base_url, headers={**fixed, **(headers or {})})

    async def chat(self, request: ChatRequest) -> Reply:
        payload = to_messages_request(request.body, request.model)
        response = await self.post("/messages", payload, request.timeouts)
        if request.stream:
            return AnthropicStream(response, request.model, request.timeouts, include_usage=request.include_usage)
        async with response:
            with http.classified("read", request.timeouts):
                raw = await response.read()
        first_byte = time.perf_counter()
        body, usage = to_chat_completion(http.decode_json(raw), created=int(time.time()))
        model = str(body["model"] or request.model)
        return Answer(body=body, usage=usage, model=model, first_token_at=first_byte)


class AnthropicStream(Stream):
    """An Anthropic event stream, re-emitted as OpenAI chat.completion.chunk JSON."""

    def __init__(
        self, response: aiohttp.ClientResponse, model: str, timeouts: Timeouts, *, include_usage: bool
    ) -> None:
        super().__init__(model)
        self._response = response
        self._timeouts = timeouts
        self._translator = ChunkTranslator(model, int(time.time()), include_usage=include_usage)
        self.usage = self._translator.usage  # the translator fills it as events arrive

    async def chunks(self) -> AsyncIterator[bytes]:
        translator = self._translator
        try:
            # iter_sse classifies transport failures as STREAM_CUT or TIMEOUT.
            async for _event, data in http.iter_sse(self._response, self._timeouts):
                for chunk in translator.feed(http.decode_json(data)):
                    if translator.content_started:
                        self.mark_first_token()
                    yield orjson.dumps(chunk)
                self.finish_reason = translator.finish_reason
                self.model = translator.model
                if translator.done:
                    return
            raise ProviderError(ErrorClass.STREAM_CUT, "upstream stream ended before message_stop")
        finally:
            await self.aclose()

    async def aclose(self) -> None:
        # A finished stream hands its connection back to the pool; a broken one drops it.
        if self._translator.done:
            self._response.release()
        else:
            self._response.close()
