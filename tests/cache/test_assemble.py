"""A streamed answer folded back into the chat.completion the cache stores."""

from __future__ import annotations

from modelplane.cache.assemble import assemble


def chunk(delta: dict[str, object], finish: str | None = None, **extra: object) -> dict[str, object]:
    head = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 7, "model": "m"}
    return {**head, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}], **extra}


def test_text_tool_calls_and_usage_are_reassembled() -> None:
    chunks = [
        chunk({"role": "assistant", "content": "Hel"}),
        chunk({"content": "lo"}),
        chunk(
            {
                "tool_calls": [
                    {"index": 0, "id": "c1", "type": "function", "function": {"name": "f", "arguments": '{"a"'}}
                ]
            }
        ),
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": ": 1}"}}]}),
        chunk({}, "tool_calls"),
        {"id": "chatcmpl-1", "choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 2}},
    ]
    body = assemble(chunks)
    assert body == {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 7,
        "model": "m",
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": "Hello",
                    "tool_calls": [
                        {"id": "c1", "type": "function", "function": {"name": "f", "arguments": '{"a": 1}'}}
                    ],
                },
                "finish_reason": "tool_calls",
            }
        ],
        "usage": {"prompt_tokens": 3, "completion_tokens": 2},
    }


def test_nothing_to_keep_from_errors_several_choices_or_no_chunks() -> None:
    assert assemble([]) is None
    assert assemble([chunk({"content": "a"}), {"error": {"message": "broke"}}]) is None
    second = chunk({"content": "b"})
    second["choices"] = [{"index": 1, "delta": {"content": "b"}}]
    assert assemble([chunk({"content": "a"}), second]) is None
