"""A scriptable, fault-injecting upstream on 127.0.0.1 for adapter and gateway tests.

It speaks both wire shapes, chosen by path: OpenAI (`/v1/chat/completions`,
`/v1/embeddings`, `/v1/models`) and Anthropic (`/v1/messages`). Tests queue behaviours
with `script(ok(), error(429, headers={"retry-after": "2"}), ...)`; each request, on any
path, takes the next one, and an empty queue answers `ok()`.

    async with ScriptedUpstream() as up:          # in the test's event loop
        up.script(stream_cut(after_chunks=2))
        ...
    with ScriptedUpstream.in_thread() as up:      # for sync clients and subprocesses
        ...
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web

JSON = dict[str, Any]

_OPENAI_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "invalid_request_error",
    403: "permission_denied",
    404: "invalid_request_error",
    429: "rate_limit_exceeded",
}
_ANTHROPIC_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    529: "overloaded_error",
}
_STOP_REASONS = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "content_filter": "refusal",
}


@dataclass(slots=True)
class Received:
    """One request the upstream received."""

    method: str
    path: str
    headers: dict[str, str]
    json: Any
    body: bytes
    number: int = 0  # 1-based arrival order; gives each answer a distinct id


# ---------------------------------------------------------------- steps


class Step:
    """A scripted behaviour for one request."""

    async def respond(self, request: web.Request, received: Received, wire: Wire) -> web.StreamResponse:
        raise NotImplementedError


@dataclass(frozen=True, slots=True)
class Ok(Step):
    """A normal answer, streamed when the request asks for it."""

    content: str = "Hello!"
    prompt_tokens: int = 10
    completion_tokens: int = 5
    cached_tokens: int = 0
    cache_creation_tokens: int = 0
    finish_reason: str = "stop"
    tool_calls: tuple[JSON, ...] = ()

    async def respond(self, request: web.Request, received: Received, wire: Wire) -> web.StreamResponse:
        if not _wants_stream(received) or not wire.streams:
            return web.json_response(wire.answer(self, received), dumps=_dumps)
        response = await _open_sse(request)
        await _send_events(response, wire.events(self, received))
        return response

    @property
    def stop(self) -> str:
        """The finish reason, switched to `tool_calls` when tools are called and none was chosen."""
        return "tool_calls" if self.tool_calls and self.finish_reason == "stop" else self.finish_reason


@dataclass(frozen=True, slots=True)
class Error(Step):
    status: int
    body: Any = None
    headers: dict[str, str] | None = None

    async def respond(self, request: web.Request, received: Received, wire: Wire) -> web.StreamResponse:
        body = wire.error(self.status) if self.body is None else self.body
        raw = body if isinstance(body, bytes) else (body if isinstance(body, str) else _dumps(body)).encode()
        return web.Response(
            status=self.status, body=raw, headers=self.headers, content_type="application/json"
        )


@dataclass(frozen=True, slots=True)
class Slow(Step):
    seconds: float
    then: Step

    async def respond(self, request: web.Request, received: Received, wire: Wire) -> web.StreamResponse:
        await asyncio.sleep(self.seconds)
        return await self.then.respond(request, received, wire)


@dataclass(frozen=True, slots=True)
class Malformed(Step):
    async def respond(self, request: web.Request, received: Received, wire: Wire) -> web.StreamResponse:
        return web.Response(status=200, text='{"id": "broken", "choices": [', content_type="application/json")


@dataclass(frozen=True, slots=True)
class StreamCut(Step):
    after_chunks: int = 2
    answer: Ok = field(default_factory=Ok)

    async def respond(self, request: web.Request, received: Received, wire: Wire) -> web.StreamResponse:
        response = await _open_sse(request)
        await _send_events(response, wire.events(self.answer, received, cut_after=self.after_chunks))
        # Abort, not close: the client must see a broken chunked body, not a clean end.
        if request.transport is not None:
            request.transport.abort()
        return response


@dataclass(frozen=True, slots=True)
class Stall(Step):
    seconds: float
    answer: Ok = field(default_factory=Ok)

    async def respond(self, request: web.Request, received: Received, wire: Wire) -> web.StreamResponse:
        streaming = _wants_stream(received) and wire.streams
        response = await _open_sse(request) if streaming else await _open_json(request)
        await asyncio.sleep(self.seconds)
        if streaming:
            await _send_events(response, wire.events(self.answer, received))
        else:
            await response.write(_dumps(wire.answer(self.answer, received)).encode())
        return response


def ok(
    content: str = "Hello!",
    *,
    prompt_tokens: int = 10,
    completion_tokens: int = 5,
    cached_tokens: int = 0,
    cache_creation_tokens: int = 0,
    finish_reason: str = "stop",
    tool_calls: list[JSON] | None = None,
) -> Ok:
    """A normal answer. `prompt_tokens` counts all input the OpenAI way (cached included).

    `tool_calls` items are `{"name": ..., "arguments": dict | str, "id": optional}`.
    """
    calls = tuple(_normal_tool_call(call, i) for i, call in enumerate(tool_calls or []))
    return Ok(
        content, prompt_tokens, completion_tokens, cached_tokens, cache_creation_tokens, finish_reason, calls
    )


def error(status: int, *, body: Any = None, headers: dict[str, str] | None = None) -> Error:
    """An error status; the default body is the provider-shaped error JSON for the path."""
    return Error(status, body, headers)


def slow(seconds: float, then: Step | None = None) -> Slow:
    """Wait `seconds` before sending anything (headers included), then behave like `then`."""
    return Slow(seconds, then if then is not None else ok())


def malformed() -> Malformed:
    """200 with a body that is not JSON."""
    return Malformed()


def stream_cut(after_chunks: int = 2) -> StreamCut:
    """Stream `after_chunks` content chunks, then drop the connection without a proper end."""
    return StreamCut(after_chunks)


def stall(seconds: float) -> Stall:
    """Send headers, then nothing for `seconds`, then answer normally."""
    return Stall(seconds)


# ---------------------------------------------------------------- wire shapes


class Wire:
    """How one API shapes answers, stream events and errors."""

    streams = True

    def answer(self, step: Ok, received: Received) -> JSON:
        raise NotImplementedError

    def events(self, step: Ok, received: Received, cut_after: int | None = None) -> list[bytes]:
        raise NotImplementedError

    def error(self, status: int) -> JSON:
        kind = _OPENAI_ERROR_TYPES.get(status, "server_error")
        return {"error": {"message": f"scripted error {status}", "type": kind, "param": None, "code": None}}


class OpenAIChat(Wire):
    def answer(self, step: Ok, received: Received) -> JSON:
        message: JSON = {"role": "assistant", "content": step.content or None, "refusal": None}
        if step.tool_calls:
            message["tool_calls"] = [_openai_tool_call(call) for call in step.tool_calls]
        return {
            **_openai_head(received, "chat.completion"),
            "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": step.stop}],
            "usage": _openai_usage(step),
        }

    def events(self, step: Ok, received: Received, cut_after: int | None = None) -> list[bytes]:
        head = _openai_head(received, "chat.completion.chunk")
        with_usage = bool((_body(received).get("stream_options") or {}).get("include_usage"))

        def chunk(delta: JSON, finish: str | None = None) -> bytes:
            data: JSON = {
                **head,
                "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
            }
            if with_usage:
                data["usage"] = None
            return b"data: " + orjson.dumps(data) + b"\n\n"

        pieces = [chunk({"content": piece}) for piece in split_content(step.content)]
        if cut_after is not None:
            return [chunk({"role": "assistant", "content": ""}), *pieces[:cut_after]]
        tools = [
            chunk({"tool_calls": [{**_openai_tool_call(call), "index": i}]})
            for i, call in enumerate(step.tool_calls)
        ]
        events = [chunk({"role": "assistant", "content": ""}), *pieces, *tools, chunk({}, step.stop)]
        if with_usage:
            usage = {**head, "choices": [], "usage": _openai_usage(step)}
            events.append(b"data: " + orjson.dumps(usage) + b"\n\n")
        return [*events, b"data: [DONE]\n\n"]


class OpenAIEmbeddings(Wire):
    streams = False

    def answer(self, step: Ok, received: Received) -> JSON:
        inputs = _body(received).get("input", "")
        texts = [inputs] if isinstance(inputs, str) else list(inputs)
        data = [
            {"object": "embedding", "index": i, "embedding": embed(str(text))} for i, text in enumerate(texts)
        ]
        tokens = sum(len(str(text).split()) for text in texts)
        return {
            "object": "list",
            "data": data,
            "model": _body(received).get("model", "scripted-embed"),
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }


class OpenAIModels(Wire):
    streams = False

    def answer(self, step: Ok, received: Received) -> JSON:
        models = ["scripted-model", "scripted-embed"]
        return {
            "object": "list",
            "data": [{"id": m, "object": "model", "created": 0, "owned_by": "scripted"} for m in models],
        }


class AnthropicMessages(Wire):
    def answer(self, step: Ok, received: Received) -> JSON:
        return {
            **self._message(step, received, streaming=False),
            "content": _anthropic_blocks(step),
            "stop_reason": _STOP_REASONS.get(step.stop, step.stop),
        }

    def events(self, step: Ok, received: Received, cut_after: int | None = None) -> list[bytes]:
        pieces = split_content(step.content)
        text = [
            (
                "content_block_delta",
                {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": piece}},
            )
            for piece in pieces
        ]
        has_text = bool(step.content) or cut_after is not None
        text_block = {
            "type": "content_block_start",
            "index": 0,
            "content_block": {"type": "text", "text": ""},
        }
        opening = [("content_block_start", text_block)] if has_text else []
        start = [
            ("message_start", {"type": "message_start", "message": self._message(step, received, True)}),
            *opening,
            ("ping", {"type": "ping"}),
        ]
        if cut_after is not None:
            return [_event(name, data) for name, data in [*start, *text[:cut_after]]]
        closing = [("content_block_stop", {"type": "content_block_stop", "index": 0})] if has_text else []
        end = [
            *closing,
            *(
                event
                for i, call in enumerate(step.tool_calls)
                for event in _tool_use_events(call, i + int(has_text))
            ),
            (
                "message_delta",
                {
                    "type": "message_delta",
                    "delta": {"stop_reason": _STOP_REASONS.get(step.stop, step.stop), "stop_sequence": None},
                    "usage": {"output_tokens": step.completion_tokens},
                },
            ),
            ("message_stop", {"type": "message_stop"}),
        ]
        return [_event(name, data) for name, data in [*start, *text, *end]]

    def error(self, status: int) -> JSON:
        kind = _ANTHROPIC_ERROR_TYPES.get(status, "api_error")
        return {"type": "error", "error": {"type": kind, "message": f"scripted error {status}"}}

    @staticmethod
    def _message(step: Ok, received: Received, streaming: bool) -> JSON:
        usage = {
            "input_tokens": max(0, step.prompt_tokens - step.cached_tokens - step.cache_creation_tokens),
            "cache_creation_input_tokens": step.cache_creation_tokens,
            "cache_read_input_tokens": step.cached_tokens,
            # message_start carries a placeholder; message_delta has the real output count.
            "output_tokens": 1 if streaming else step.completion_tokens,
        }
        return {
            "id": f"msg_{received.number:06d}",
            "type": "message",
            "role": "assistant",
            "model": _body(received).get("model", "scripted-model"),
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": usage,
        }


def split_content(content: str) -> list[str]:
    """Split text into at least three stream pieces (word-wise, else by characters)."""
    words = [word for word in content.replace(" ", "\0 ").split("\0") if word]
    if len(words) >= 3 or len(content) < 3:
        return words
    size = -(-len(content) // 3)
    return [content[i : i + size] for i in range(0, len(content), size)]


def embed(text: str, dims: int = 8) -> list[float]:
    """A deterministic small vector for `text` (same text, same vector)."""
    seed = sum((i + 1) * ord(ch) for i, ch in enumerate(text)) or 1
    return [round(((seed * (k + 7919)) % 1000) / 1000.0, 3) for k in range(dims)]


# ---------------------------------------------------------------- the server


_ROUTES: list[tuple[str, str, Wire]] = [
    ("POST", "/v1/chat/completions", OpenAIChat()),
    ("POST", "/v1/embeddings", OpenAIEmbeddings()),
    ("GET", "/v1/models", OpenAIModels()),
    ("POST", "/v1/messages", AnthropicMessages()),
]


class ScriptedUpstream:
    """The upstream test double; an async context manager that serves on a free local port."""

    def __init__(self) -> None:
        self._queue: deque[Step] = deque()
        self.default: Step = ok()  # what an empty queue answers; e.g. error(500) for an upstream that is down
        self._lock = threading.Lock()
        self.requests: list[Received] = []
        self._runner: web.AppRunner | None = None
        self.port = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def script(self, *steps: Step) -> None:
        """Queue behaviours for the next requests, in order."""
        with self._lock:
            self._queue.extend(steps)

    def reset(self) -> None:
        """Forget scripted steps and received requests; answer ok() again."""
        with self._lock:
            self._queue.clear()
            self.requests.clear()
            self.default = ok()

    def count(self, path_suffix: str = "/chat/completions") -> int:
        """How many received requests had a path ending with `path_suffix`."""
        return sum(1 for r in list(self.requests) if r.path.endswith(path_suffix))

    @property
    def last(self) -> Received:
        return self.requests[-1]

    async def start(self) -> None:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        for method, path, wire in _ROUTES:
            app.router.add_route(method, path, self._handler(wire))
        # Handlers of abandoned requests (a client that timed out on a stall) are
        # cancelled, and shutdown does not wait long for them.
        self._runner = web.AppRunner(app, handler_cancellation=True, shutdown_timeout=0.2, access_log=None)
        await self._runner.setup()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        await web.SockSite(self._runner, sock).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> ScriptedUpstream:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @classmethod
    @contextlib.contextmanager
    def in_thread(cls) -> Iterator[ScriptedUpstream]:
        """Run an upstream on its own event loop in a daemon thread."""
        upstream = cls()
        loop = asyncio.new_event_loop()
        thread = threading.Thread(target=loop.run_forever, name="scripted-upstream", daemon=True)
        thread.start()
        try:
            asyncio.run_coroutine_threadsafe(upstream.start(), loop).result(timeout=10)
            yield upstream
        finally:
            asyncio.run_coroutine_threadsafe(upstream.stop(), loop).result(timeout=10)
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout=10)
            loop.close()

    def _next_step(self) -> Step:
        with self._lock:
            return self._queue.popleft() if self._queue else self.default

    def _handler(self, wire: Wire) -> Any:
        async def handle(request: web.Request) -> web.StreamResponse:
            body = await request.read()
            headers = {k.lower(): v for k, v in request.headers.items()}
            with self._lock:
                received = Received(
                    request.method, request.path, headers, _parse(body), body, len(self.requests) + 1
                )
                self.requests.append(received)
            return await self._next_step().respond(request, received, wire)

        return handle


# ---------------------------------------------------------------- small pieces


def _parse(body: bytes) -> Any:
    try:
        return orjson.loads(body) if body else None
    except orjson.JSONDecodeError:
        return None


def _body(received: Received) -> JSON:
    return received.json if isinstance(received.json, dict) else {}


def _wants_stream(received: Received) -> bool:
    return bool(_body(received).get("stream"))


def _dumps(obj: Any) -> str:
    return orjson.dumps(obj).decode()


async def _open_sse(request: web.Request) -> web.StreamResponse:
    response = web.StreamResponse(headers={"content-type": "text/event-stream", "cache-control": "no-cache"})
    await response.prepare(request)
    return response


async def _open_json(request: web.Request) -> web.StreamResponse:
    response = web.StreamResponse(headers={"content-type": "application/json"})
    await response.prepare(request)
    return response


async def _send_events(response: web.StreamResponse, events: list[bytes]) -> None:
    for event in events:
        await response.write(event)
        await asyncio.sleep(0)  # let each event leave as its own chunk, like a real model


def _event(name: str, data: JSON) -> bytes:
    return b"event: " + name.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


def _normal_tool_call(call: JSON, index: int) -> JSON:
    function = call.get("function", call)
    arguments = function.get("arguments", {})
    parsed = orjson.loads(arguments) if isinstance(arguments, str) else arguments
    return {"id": call.get("id", f"call_{index}"), "name": function["name"], "arguments": parsed}


def _openai_tool_call(call: JSON) -> JSON:
    return {
        "id": call["id"],
        "type": "function",
        "function": {"name": call["name"], "arguments": _dumps(call["arguments"])},
    }


def _openai_head(received: Received, obj: str) -> JSON:
    return {
        "id": f"chatcmpl-{received.number:06d}",
        "object": obj,
        "created": int(time.time()),
        "model": _body(received).get("model", "scripted-model"),
        "system_fingerprint": None,
    }


def _openai_usage(step: Ok) -> JSON:
    return {
        "prompt_tokens": step.prompt_tokens,
        "completion_tokens": step.completion_tokens,
        "total_tokens": step.prompt_tokens + step.completion_tokens,
        "prompt_tokens_details": {"cached_tokens": step.cached_tokens, "audio_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0},
    }


def _anthropic_blocks(step: Ok) -> list[JSON]:
    blocks: list[JSON] = [{"type": "text", "text": step.content}] if step.content else []
    blocks += [
        {"type": "tool_use", "id": call["id"], "name": call["name"], "input": call["arguments"]}
        for call in step.tool_calls
    ]
    return blocks


def _tool_use_events(call: JSON, index: int) -> list[tuple[str, JSON]]:
    arguments = _dumps(call["arguments"])
    half = len(arguments) // 2
    block = {"type": "tool_use", "id": call["id"], "name": call["name"], "input": {}}
    return [
        ("content_block_start", {"type": "content_block_start", "index": index, "content_block": block}),
        *(
            (
                "content_block_delta",
                {
                    "type": "content_block_delta",
                    "index": index,
                    "delta": {"type": "input_json_delta", "partial_json": part},
                },
            )
            for part in (arguments[:half], arguments[half:])
        ),
        ("content_block_stop", {"type": "content_block_stop", "index": index}),
    ]
