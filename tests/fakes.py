"""An in-process fake provider: the pipeline's test double (never shipped in the package), and an
in-process gateway that uses it."""

from __future__ import annotations

from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import orjson

from modelplane.config.load import LoadedConfig, parse_config
from modelplane.errors import ErrorClass, ProviderError
from modelplane.providers.base import Answer, ChatRequest, Provider, Stream, Usage
from modelplane.serving.gateway import Gateway


@dataclass
class Reply:
    """What the fake answers next: text with usage, a stream (optionally cut), or an error."""

    content: str = "Hello from the fake."
    usage: Usage = field(default_factory=lambda: Usage(input_tokens=100, cached_input_tokens=40, output_tokens=20))
    error: ProviderError | None = None
    cut_after: int | None = None  # for streams: raise STREAM_CUT after this many chunks


class FakeProvider(Provider):
    kind = "openai"

    def __init__(self, name: str = "fake", replies: list[Reply] | None = None) -> None:
        super().__init__(name)
        self.replies: deque[Reply] = deque(replies or [])
        self.requests: list[ChatRequest] = []

    def script(self, *replies: Reply) -> None:
        self.replies.extend(replies)

    async def chat(self, request: ChatRequest) -> Answer | Stream:
        self.requests.append(request)
        reply = self.replies.popleft() if self.replies else Reply()
        if reply.error is not None:
            raise reply.error
        if request.stream:
            return _FakeStream(request.model, reply)
        body = {
            "id": "chatcmpl-fake",
            "object": "chat.completion",
            "created": 0,
            "model": request.model,
            "choices": [
                {"index": 0, "message": {"role": "assistant", "content": reply.content}, "finish_reason": "stop"}
            ],
            "usage": {"prompt_tokens": reply.usage.input_tokens, "completion_tokens": reply.usage.output_tokens},
        }
        return Answer(body, reply.usage, request.model)


class _FakeStream(Stream):
    def __init__(self, model: str, reply: Reply) -> None:
        super().__init__(model)
        self.reply = reply

    async def chunks(self) -> AsyncIterator[bytes]:
        words = self.reply.content.split(" ")
        for i, word in enumerate(words):
            if self.reply.cut_after is not None and i >= self.reply.cut_after:
                raise ProviderError(ErrorClass.STREAM_CUT, "fake stream cut")
            self.mark_first_token()
            text = word if i == 0 else " " + word
            yield orjson.dumps(
                {"object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {"content": text}}]}
            )
        self.usage = self.reply.usage
        self.finish_reason = "stop"


def rate_limited(retry_after: float = 2.0) -> Reply:
    return Reply(error=ProviderError(ErrorClass.RATE_LIMIT, "slow down", status=429, retry_after=retry_after))


def server_error() -> Reply:
    return Reply(error=ProviderError(ErrorClass.SERVER_ERROR, "upstream answered 500", status=500))


async def in_process_gateway(config_text: str, tmp_path: Path, providers: dict[str, Provider]) -> Gateway:
    """A gateway on `config_text` with its SQLite ledger in `tmp_path/l.db` and fake providers."""
    config = parse_config(config_text, env={})
    config = config.model_copy(
        update={"ledger": config.ledger.model_copy(update={"url": f"sqlite:///{tmp_path}/l.db"})}
    )
    return await Gateway.start(LoadedConfig(config, "v-test", "test", False, tmp_path), providers=providers)
