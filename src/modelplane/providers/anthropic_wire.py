"""Translation between OpenAI chat completions and Anthropic's Messages API, both ways.

Pure functions and one small stream state machine, so every rule here is unit-testable
without a network. The adapter in `anthropic.py` only moves bytes.
"""

from __future__ import annotations

from typing import Any

import orjson

from modelplane.errors import ErrorClass, ProviderError
from modelplane.providers.base import JSON, Usage

# Anthropic requires max_tokens; OpenAI clients usually leave it out.
DEFAULT_MAX_TOKENS = 4096

_FINISH_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}

_USAGE_FIELDS = (
    ("cache_read_input_tokens", "cached_input_tokens"),
    ("cache_creation_input_tokens", "cache_write_tokens"),
    ("output_tokens", "output_tokens"),
)


def bad_request(message: str) -> ProviderError:
    """The client's body cannot be expressed for Anthropic; retrying elsewhere will not help."""
    return ProviderError(ErrorClass.BAD_REQUEST, message)


# ---------------------------------------------------------------- request: OpenAI -> Anthropic


def to_messages_request(body: JSON, model: str) -> JSON:
    """An Anthropic Messages API request for an OpenAI chat-completions body."""
    system, messages = split_messages(body.get("messages") or [])
    request: JSON = {"model": model, "messages": messages, "max_tokens": max_tokens(body)}
    if system:
        request["system"] = system
    request.update(sampling(body))
    request.update(tooling(body))
    if body.get("stream"):
        request["stream"] = True
    if isinstance(body.get("user"), str):
        request["metadata"] = {"user_id": body["user"]}
    # response_format has no Messages API twin; the validate stage enforces it instead.
    return request


def max_tokens(body: JSON) -> int:
    value = body.get("max_completion_tokens") or body.get("max_tokens")
    return int(value) if value else DEFAULT_MAX_TOKENS


def sampling(body: JSON) -> JSON:
    """temperature, top_p and stop sequences in Anthropic's names and ranges."""
    out: JSON = {}
    if body.get("temperature") is not None:
        # OpenAI allows 0..2, Anthropic 0..1: clamp rather than fail a serving over it.
        out["temperature"] = min(float(body["temperature"]), 1.0)
    if body.get("top_p") is not None:
        out["top_p"] = body["top_p"]
    stop = body.get("stop")
    if stop:
        out["stop_sequences"] = [stop] if isinstance(stop, str) else list(stop)
    return out


def split_messages(messages: list[JSON]) -> tuple[str, list[JSON]]:
    """The system prompt and the alternating user/assistant turns of an OpenAI message list."""
    system: list[str] = []
    turns: list[JSON] = []
    for message in messages:
        role = message.get("role")
        if role in ("system", "developer"):
            system.append(text_of(message.get("content")))
            continue
        turn_role, blocks = to_turn(message)
        if not blocks:
            continue  # Anthropic rejects empty turns; an empty one carries nothing anyway.
        if turns and turns[-1]["role"] == turn_role:
            # Anthropic requires strict alternation; OpenAI allows runs (tool results, split user turns).
            turns[-1]["content"].extend(blocks)
        else:
            turns.append({"role": turn_role, "content": blocks})
    return "\n\n".join(part for part in system if part), turns


def to_turn(message: JSON) -> tuple[str, list[JSON]]:
    """The Anthropic role and content blocks of one non-system OpenAI message."""
    role = message.get("role")
    if role == "user":
        return "user", content_blocks(message.get("content"))
    if role == "assistant":
        return "assistant", content_blocks(message.get("content")) + tool_use_blocks(message)
    if role == "tool":
        result = {
            "type": "tool_result",
            "tool_use_id": message.get("tool_call_id", ""),
            "content": text_of(message.get("content")),
        }
        return "user", [result]
    raise bad_request(f"message role '{role}' is not supported by the anthropic provider")


def text_of(content: Any) -> str:
    """Plain text of an OpenAI content value (a string or a list of text parts)."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    return "".join(part.get("text", "") for part in content if _is_text(part))


def _is_text(part: Any) -> bool:
    return isinstance(part, dict) and part.get("type") == "text"


def content_blocks(content: Any) -> list[JSON]:
    """Anthropic content blocks for an OpenAI content value; empty text is dropped."""
    if content is None or content == "":
        return []
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    blocks: list[JSON] = []
    for part in content:
        kind = part.get("type")
        if kind == "text" and part.get("text"):
            blocks.append({"type": "text", "text": part["text"]})
        elif kind == "image_url":
            blocks.append(image_block(part.get("image_url") or {}))
        else:
            raise bad_request(f"content part type '{kind}' is not supported by the anthropic provider")
    return blocks


def image_block(image_url: JSON | str) -> JSON:
    """An image block from an OpenAI image_url: base64 data URLs inline, other URLs by reference."""
    url = image_url if isinstance(image_url, str) else str(image_url.get("url", ""))
    if not url.startswith("data:"):
        return {"type": "image", "source": {"type": "url", "url": url}}
    header, _, data = url.partition(",")
    media_type, _, encoding = header[len("data:") :].partition(";")
    if encoding != "base64" or not data:
        raise bad_request("image data URLs must be base64-encoded")
    return {"type": "image", "source": {"type": "base64", "media_type": media_type, "data": data}}


def tool_use_blocks(message: JSON) -> list[JSON]:
    """tool_use blocks for an assistant message's OpenAI tool_calls."""
    blocks = []
    for call in message.get("tool_calls") or []:
        function = call.get("function") or {}
        blocks.append(
            {
                "type": "tool_use",
                "id": call.get("id", ""),
                "name": function.get("name", ""),
                "input": parse_arguments(function.get("arguments")),
            }
        )
    return blocks


def parse_arguments(arguments: Any) -> JSON:
    """A tool call's arguments as an object; OpenAI sends them JSON-encoded."""
    if not arguments:
        return {}
    if isinstance(arguments, dict):
        return arguments
    try:
        parsed = orjson.loads(arguments)
    except orjson.JSONDecodeError as exc:
        raise bad_request(f"tool call arguments are not valid JSON: {exc}") from exc
    if not isinstance(parsed, dict):
        raise bad_request("tool call arguments must be a JSON object")
    return parsed


def tooling(body: JSON) -> JSON:
    """tools and tool_choice in Anthropic's shape."""
    out: JSON = {}
    tools = [to_tool(tool) for tool in body.get("tools") or [] if tool.get("type", "function") == "function"]
    if tools:
        out["tools"] = tools
    choice = to_tool_choice(body.get("tool_choice"))
    if body.get("parallel_tool_calls") is False and tools:
        choice = choice or {"type": "auto"}
        if choice["type"] != "none":
            choice["disable_parallel_tool_use"] = True
    if choice is not None and (tools or choice["type"] == "none"):
        out["tool_choice"] = choice
    return out


def to_tool(tool: JSON) -> JSON:
    function = tool.get("function") or {}
    out: JSON = {
        "name": function.get("name", ""),
        "input_schema": function.get("parameters") or {"type": "object", "properties": {}},
    }
    if function.get("description"):
        out["description"] = function["description"]
    return out


def to_tool_choice(choice: Any) -> JSON | None:
    """auto/none/required/named function → auto/none/any/tool."""
    if choice is None:
        return None
    if isinstance(choice, str):
        mapped = {"auto": "auto", "none": "none", "required": "any"}.get(choice)
        if mapped is None:
            raise bad_request(f"tool_choice '{choice}' is not supported")
        return {"type": mapped}
    name = (choice.get("function") or {}).get("name")
    if not name:
        raise bad_request("tool_choice object must name a function")
    return {"type": "tool", "name": name}


# ---------------------------------------------------------------- response: Anthropic -> OpenAI


def finish_reason(stop_reason: str | None) -> str:
    return _FINISH_REASONS.get(stop_reason or "end_turn", "stop")


def to_usage(usage: JSON, into: Usage | None = None) -> Usage:
    """Anthropic usage in OpenAI's terms: input counts cache reads and writes too.

    Fields missing from `usage` keep their value in `into`, because a stream reports
    input in message_start and output in message_delta.
    """
    out = into if into is not None else Usage()
    for source, target in _USAGE_FIELDS:
        if source in usage:
            setattr(out, target, int(usage[source] or 0))
    if "input_tokens" in usage:
        # Anthropic's input_tokens excludes cache reads and writes; OpenAI's prompt_tokens includes them.
        out.input_tokens = int(usage["input_tokens"] or 0) + out.cached_input_tokens + out.cache_write_tokens
    return out


def usage_body(usage: Usage) -> JSON:
    """OpenAI's `usage` object for a Usage."""
    return {
        "prompt_tokens": usage.input_tokens,
        "completion_tokens": usage.output_tokens,
        "total_tokens": usage.input_tokens + usage.output_tokens,
        "prompt_tokens_details": {"cached_tokens": usage.cached_input_tokens},
        "completion_tokens_details": {"reasoning_tokens": usage.reasoning_tokens},
    }


def to_chat_completion(message: JSON, created: int) -> tuple[JSON, Usage]:
    """An OpenAI chat.completion body, and its Usage, for an Anthropic message."""
    blocks = message.get("content") or []
    text = "".join(block.get("text", "") for block in blocks if block.get("type") == "text")
    calls = [tool_call(block) for block in blocks if block.get("type") == "tool_use"]
    reply: JSON = {"role": "assistant", "content": text or None}
    if calls:
        reply["tool_calls"] = calls
    usage = to_usage(message.get("usage") or {})
    body = {
        "id": message.get("id", ""),
        "object": "chat.completion",
        "created": created,
        "model": message.get("model", ""),
        "choices": [
            {
                "index": 0,
                "message": reply,
                "logprobs": None,
                "finish_reason": finish_reason(message.get("stop_reason")),
            }
        ],
        "usage": usage_body(usage),
    }
    return body, usage


def tool_call(block: JSON) -> JSON:
    return {
        "id": block.get("id", ""),
        "type": "function",
        "function": {
            "name": block.get("name", ""),
            "arguments": orjson.dumps(block.get("input") or {}).decode(),
        },
    }


# ---------------------------------------------------------------- stream: events -> chunks


class ChunkTranslator:
    """Turns Anthropic stream events into OpenAI chat.completion.chunk objects, one event at a time."""

    def __init__(self, model: str, created: int, *, include_usage: bool) -> None:
        self.id = ""
        self.model = model
        self.created = created
        self.include_usage = include_usage
        self.usage = Usage()
        self.finish_reason: str | None = None
        self.content_started = False
        self.done = False
        self._tool_index: dict[int, int] = {}  # Anthropic block index -> OpenAI tool_calls index

    def feed(self, event: JSON) -> list[JSON]:
        """The chunks (possibly none) that one event becomes."""
        kind = event.get("type")
        if kind == "message_start":
            return self._start(event.get("message") or {})
        if kind == "content_block_start":
            return self._block_start(event)
        if kind == "content_block_delta":
            return self._block_delta(event)
        if kind == "message_delta":
            return self._message_delta(event)
        if kind == "message_stop":
            self.done = True
            return [self._usage_chunk()] if self.include_usage else []
        if kind == "error":
            err = event.get("error") or {}
            detail = f"{err.get('type', 'error')}: {err.get('message', '')}"
            raise ProviderError(ErrorClass.STREAM_CUT, f"upstream stream failed: {detail}")
        return []  # ping, content_block_stop, and event types added later

    def _start(self, message: JSON) -> list[JSON]:
        self.id = message.get("id", "")
        self.model = message.get("model") or self.model
        to_usage(message.get("usage") or {}, self.usage)
        return [self._chunk({"role": "assistant", "content": ""})]

    def _block_start(self, event: JSON) -> list[JSON]:
        block = event.get("content_block") or {}
        if block.get("type") == "tool_use":
            index = self._tool_index.setdefault(int(event.get("index", 0)), len(self._tool_index))
            self.content_started = True
            call = {
                "index": index,
                "id": block.get("id", ""),
                "type": "function",
                "function": {"name": block.get("name", ""), "arguments": ""},
            }
            return [self._chunk({"tool_calls": [call]})]
        if block.get("type") == "text" and block.get("text"):
            self.content_started = True
            return [self._chunk({"content": block["text"]})]
        return []

    def _block_delta(self, event: JSON) -> list[JSON]:
        delta = event.get("delta") or {}
        if delta.get("type") == "text_delta":
            self.content_started = True
            return [self._chunk({"content": delta.get("text", "")})]
        if delta.get("type") == "input_json_delta":
            index = self._tool_index.get(int(event.get("index", 0)), 0)
            return [
                self._chunk(
                    {"tool_calls": [{"index": index, "function": {"arguments": delta.get("partial_json", "")}}]}
                )
            ]
        return []  # thinking and signature deltas have no chat-completions twin

    def _message_delta(self, event: JSON) -> list[JSON]:
        to_usage(event.get("usage") or {}, self.usage)
        self.finish_reason = finish_reason((event.get("delta") or {}).get("stop_reason"))
        return [self._chunk({}, self.finish_reason)]

    def _chunk(self, delta: JSON, finish: str | None = None) -> JSON:
        chunk = self._head([{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}])
        if self.include_usage:
            chunk["usage"] = None  # OpenAI sends null usage on every chunk but the last
        return chunk

    def _usage_chunk(self) -> JSON:
        chunk = self._head([])
        chunk["usage"] = usage_body(self.usage)
        return chunk

    def _head(self, choices: list[JSON]) -> JSON:
        return {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": choices,
        }
