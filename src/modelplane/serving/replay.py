"""A whole answer replayed as a stream, for clients that asked to stream an answer that had to be
whole first (a validated answer, the deterministic fallback)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import orjson

from modelplane.providers.base import JSON, Answer, Stream


class Replay(Stream):
    """The chunks an OpenAI server would have streamed for `answer`: each choice's message (with its
    log-probabilities, if any), each choice's finish, then the usage."""

    def __init__(self, answer: Answer, *, include_usage: bool) -> None:
        super().__init__(answer.model)
        self.answer = answer
        self.include_usage = include_usage
        self.usage = answer.usage

    async def chunks(self) -> AsyncIterator[bytes]:
        body = self.answer.body
        base: JSON = {
            "id": body.get("id", "chatcmpl-replay"),
            "object": "chat.completion.chunk",
            "created": body.get("created", int(time.time())),
            "model": body.get("model", self.model),
        }
        choices: list[dict[str, Any]] = body.get("choices") or [{}]
        self.mark_first_token()
        for position, choice in enumerate(choices):
            index = choice.get("index", position)
            message = dict(choice.get("message") or {"role": "assistant", "content": ""})
            delta: JSON = {"role": "assistant", "content": message.get("content")}
            if message.get("refusal"):
                delta["refusal"] = message["refusal"]
            if message.get("tool_calls"):
                delta["tool_calls"] = [{**call, "index": i} for i, call in enumerate(message["tool_calls"])]
            streamed: JSON = {"index": index, "delta": delta, "finish_reason": None}
            if choice.get("logprobs") is not None:
                streamed["logprobs"] = choice["logprobs"]
            yield orjson.dumps({**base, "choices": [streamed]})
        self.finish_reason = choices[0].get("finish_reason") or "stop"
        for position, choice in enumerate(choices):
            finish = {
                "index": choice.get("index", position),
                "delta": {},
                "finish_reason": choice.get("finish_reason") or "stop",
            }
            yield orjson.dumps({**base, "choices": [finish]})
        if self.include_usage and body.get("usage"):
            yield orjson.dumps({**base, "choices": [], "usage": body["usage"]})
