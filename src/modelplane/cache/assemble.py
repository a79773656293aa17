"""A streamed answer, kept whole for the cache: the chunks as they pass, then one chat.completion.

Only a stream that ended normally is assembled: the adapters raise `STREAM_CUT` from
iteration when an upstream stream ends without its proper end, so a cut stream never
completes here and is never stored.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import orjson

from modelplane.providers.base import JSON, Stream

__all__ = ["Collecting", "assemble"]


class Collecting(Stream):
    """Passes a stream through unchanged and remembers its chunks."""

    def __init__(self, inner: Stream) -> None:
        super().__init__(inner.model)
        self.inner = inner
        self.complete = False
        self._chunks: list[bytes] = []

    async def chunks(self) -> AsyncIterator[bytes]:
        async for chunk in self.inner.chunks():
            self._chunks.append(chunk)
            yield chunk
        self.complete = True

    async def aclose(self) -> None:
        await self.inner.aclose()

    def answer(self) -> JSON | None:
        """The whole answer as a chat.completion, once the stream ended normally (else None)."""
        if not self.complete:
            return None
        return assemble([orjson.loads(chunk) for chunk in self._chunks])


def assemble(chunks: list[JSON]) -> JSON | None:
    """chat.completion.chunk objects folded into the chat.completion a non-streamed call returns.

    None when there is nothing to keep: no choice, several choices, or an error event."""
    if not chunks or any("error" in chunk for chunk in chunks):
        return None
    content: list[str] = []
    calls: dict[int, JSON] = {}
    finish: str | None = None
    usage: Any = None
    for chunk in chunks:
        usage = chunk.get("usage") or usage
        for choice in chunk.get("choices") or []:
            if choice.get("index", 0) != 0:
                return None
            delta = choice.get("delta") or {}
            if isinstance(delta.get("content"), str):
                content.append(delta["content"])
            for call in delta.get("tool_calls") or []:
                _merge_call(calls.setdefault(int(call.get("index", 0)), {}), call)
            finish = choice.get("finish_reason") or finish
    message: JSON = {"role": "assistant", "content": "".join(content) if content or not calls else None}
    if calls:
        message["tool_calls"] = [calls[i] for i in sorted(calls)]
    first = chunks[0]
    body: JSON = {
        "id": first.get("id", "chatcmpl-cached"),
        "object": "chat.completion",
        "created": first.get("created", 0),
        "model": first.get("model", ""),
        "choices": [{"index": 0, "message": message, "finish_reason": finish or "stop"}],
    }
    if usage:
        body["usage"] = usage
    return body


def _merge_call(into: JSON, delta: JSON) -> None:
    """Tool-call deltas arrive in pieces: the id, type and name once, the arguments in fragments."""
    for field in ("id", "type"):
        if delta.get(field):
            into[field] = delta[field]
    function = delta.get("function") or {}
    target = into.setdefault("function", {"name": "", "arguments": ""})
    if function.get("name"):
        target["name"] = function["name"]
    if function.get("arguments"):
        target["arguments"] += function["arguments"]
    into.setdefault("type", "function")
