"""Reading a client's body: JSON, an object, and the known OpenAI fields of the right type and range.

Unknown fields pass through untouched (providers add their own); a known field of the
wrong type or out of OpenAI's range is a 400 that names the field, worded and coded as
OpenAI words and codes it, so a client gets the same answer from the gateway as from OpenAI.
"""

from __future__ import annotations

from typing import Any

import orjson

from modelplane.errors import BadRequest

_NUMBER = (int, float)
_CHAT_FIELDS: dict[str, tuple[type, ...]] = {
    "model": (str,),
    "messages": (list,),
    "stream": (bool,),
    "stream_options": (dict,),
    "temperature": _NUMBER,
    "top_p": _NUMBER,
    "max_tokens": (int,),
    "max_completion_tokens": (int,),
    "n": (int,),
    "stop": (str, list),
    "seed": (int,),
    "tools": (list,),
    "tool_choice": (str, dict),
    "response_format": (dict,),
    "presence_penalty": _NUMBER,
    "frequency_penalty": _NUMBER,
    "user": (str,),
    "logprobs": (bool,),
    "top_logprobs": (int,),
}
# The ranges of OpenAI's API reference (`POST /v1/chat/completions`): (minimum, maximum), None for no bound.
_CHAT_RANGES: dict[str, tuple[float | None, float | None]] = {
    "temperature": (0, 2),
    "top_p": (0, 1),
    "presence_penalty": (-2, 2),
    "frequency_penalty": (-2, 2),
    "max_tokens": (1, None),
    "max_completion_tokens": (1, None),
    "n": (1, 128),
    "top_logprobs": (0, 20),
}
_INSTEAD_OF_CONTENT = ("tool_calls", "function_call", "refusal", "audio")
_ROLES = ("system", "user", "assistant", "tool", "developer", "function")  # `function`: the legacy tool role
_TEXT_ONLY = frozenset(("system", "developer", "tool"))  # roles whose content parts may only be text
_EMBEDDING_FIELDS: dict[str, tuple[type, ...]] = {
    "model": (str,),
    "input": (str, list),
    "encoding_format": (str,),
    "dimensions": (int,),
    "user": (str,),
}


def parse_body(raw: bytes, fields: dict[str, tuple[type, ...]], required: tuple[str, ...]) -> dict[str, Any]:
    """Decode and type-check a request body."""
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"request body is not valid JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise BadRequest("request body must be a JSON object")
    for name in required:
        if name not in body:
            raise BadRequest(f"missing required field `{name}`", param=name)
    for name, types in fields.items():
        value = body.get(name)
        # bool is an int in Python; a number field given `true` is still a type error.
        if value is not None and (not isinstance(value, types) or (isinstance(value, bool) and bool not in types)):
            expected = " or ".join(_TYPE_NAMES[t] for t in types)
            raise BadRequest(f"field `{name}` must be {expected}, not {_json_type(value)}", param=name)
    return body


def parse_chat(raw: bytes) -> dict[str, Any]:
    body = parse_body(raw, _CHAT_FIELDS, ("messages",))
    for i, message in enumerate(body["messages"]):
        _check_message(i, message)
    if not body["messages"]:
        raise BadRequest("`messages` must not be empty", param="messages")
    for name, (low, high) in _CHAT_RANGES.items():
        value = body.get(name)
        if value is not None:
            _check_range(name, value, low, high)
    return body


def _check_message(i: int, message: Any) -> None:
    where = f"messages[{i}]"
    if not isinstance(message, dict) or not isinstance(message.get("role"), str):
        raise BadRequest(f"{where} must be an object with a string `role`", param=where)
    role = message["role"]
    if role not in _ROLES:
        supported = ", ".join(f"'{r}'" for r in _ROLES)
        raise BadRequest(
            f"Invalid value for '{where}.role': '{role}'. Supported values are: {supported}.",
            param=f"{where}.role",
            code="invalid_value",
        )
    content = message.get("content")
    if content is None:
        # An assistant turn that calls tools (or refused, or answered in audio) may go without content;
        # so may a legacy function result. Every other turn needs some.
        if role == "function" or (role == "assistant" and any(message.get(k) for k in _INSTEAD_OF_CONTENT)):
            return
        problem = "Missing required parameter" if "content" not in message else "Invalid null value for"
        raise BadRequest(
            f"{problem} '{where}.content': a {role} message needs content (a string or an array of content parts).",
            param=f"{where}.content",
            code="missing_required_parameter" if "content" not in message else "invalid_type",
        )
    if not isinstance(content, str | list):
        raise BadRequest(
            f"Invalid type for '{where}.content': expected a string or an array of content parts, "
            f"but got {_json_type(content)} instead.",
            param=f"{where}.content",
            code="invalid_type",
        )
    if role in _TEXT_ONLY and isinstance(content, list):
        # OpenAI takes only text parts here; a provider would otherwise drop an image without a word.
        for j, part in enumerate(content):
            kind = part.get("type") if isinstance(part, dict) else None
            if kind != "text":
                raise BadRequest(
                    f"Invalid value for '{where}.content[{j}].type': {kind!r}. A {role} message takes only "
                    f"text parts; send images and files in a user message.",
                    param=f"{where}.content[{j}].type",
                    code="invalid_value",
                )


def _check_range(name: str, value: float, low: float | None, high: float | None) -> None:
    """OpenAI's own wording: `Invalid 'temperature': decimal above maximum value. Expected a value <= 2, …`."""
    kind = "integer" if _CHAT_FIELDS[name] == (int,) else "decimal"
    if low is not None and value < low:
        side, limit, bound = "below", "min", f">= {low:g}"
    elif high is not None and value > high:
        side, limit, bound = "above", "max", f"<= {high:g}"
    else:
        return
    raise BadRequest(
        f"Invalid '{name}': {kind} {side} {limit}imum value. Expected a value {bound}, but got {value} instead.",
        param=name,
        code=f"{kind}_{side}_{limit}_value",
    )


def parse_embeddings(raw: bytes) -> dict[str, Any]:
    return parse_body(raw, _EMBEDDING_FIELDS, ("input",))


_TYPE_NAMES = {
    str: "a string",
    list: "an array",
    dict: "an object",
    bool: "a boolean",
    int: "an integer",
    float: "a number",
}


def _json_type(value: object) -> str:
    for python_type, name in (
        (bool, "a boolean"),
        (int, "an integer"),
        (float, "a number"),
        (str, "a string"),
        (list, "an array"),
        (dict, "an object"),
    ):
        if isinstance(value, python_type):
            return name
    return "null"
