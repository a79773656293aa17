"""The last link of a fallback chain: the feature's configured answer, the same every time."""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator

import orjson

from modelplane.providers.base import JSON, Answer, Stream, Usage

MODEL = "deterministic-fallback"


def _message(text: str) -> JSON:
    return {"role": "assistant", "content": text}


def deterministic_answer(text: str) -> Answer:
    body: JSON = {
        "id": f"chatcmpl-{os.urandom(12).hex()}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": MODEL,
        "choices": [{"index": 0, "message": _message(text), "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0},
    }
    return Answer(body, Usage(), MODEL, None, time.perf_counter())


class _TextStream(Stream):
    def __init__(self, text: str) -> None:
        super().__init__(MODEL)
        self.text = text

    async def chunks(self) -> AsyncIterator[bytes]:
        base: JSON = {
            "id": f"chatcmpl-{os.urandom(12).hex()}",
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": MODEL,
        }
        self.mark_first_token()
        yield orjson.dumps({**base, "choices": [{"index": 0, "delta": _message(self.text), "finish_reason": None}]})
        self.finish_reason = "stop"
        yield orjson.dumps({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})


def deterministic_stream(text: str) -> Stream:
    return _TextStream(text)
