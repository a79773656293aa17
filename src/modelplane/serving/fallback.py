"""The last link of a fallback chain: the feature's configured answer, the same every time."""

from __future__ import annotations

import os
import time

from modelplane.providers.base import JSON, Answer, Usage

MODEL = "deterministic-fallback"


def deterministic_answer(text: str, choices: int = 1) -> Answer:
    """The configured answer, as `choices` identical choices (a request with `n` > 1 gets as many)."""
    message = {"role": "assistant", "content": text}
    body: JSON = {
        "id": f"chatcmpl-{os.urandom(12).hex()}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": MODEL,
        "choices": [{"index": i, "message": dict(message), "finish_reason": "stop"} for i in range(choices)],
        "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0},
    }
    return Answer(body, Usage(), MODEL, None, time.perf_counter())
