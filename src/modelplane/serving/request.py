"""Reading a client's body: JSON, an object, and the known OpenAI fields of the right type.

Unknown fields pass through untouched (providers add their own); a known field of the
wrong type is a 400 that names the field.
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
}
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
        if not isinstance(message, dict) or not isinstance(message.get("role"), str):
            raise BadRequest(f"messages[{i}] must be an object with a string `role`", param=f"messages[{i}]")
    if not body["messages"]:
        raise BadRequest("`messages` must not be empty", param="messages")
    return body


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
