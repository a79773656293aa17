"""A minimal, very fast OpenAI-compatible upstream stub for benchmarks.

Raw asyncio ``Protocol`` (on uvloop when available), HTTP/1.1 keep-alive,
parses just enough of each request: the request line, the headers and a
``Content-Length`` body (chunked request bodies are accepted too). It answers

* ``POST /v1/chat/completions`` with a fixed ``chat.completion`` (with usage),
  or, when the body asks for ``"stream": true``, with a fixed short SSE stream
  ending in a usage chunk and ``data: [DONE]``;
* ``GET /v1/models`` with a one-model list;
* any other path with a small 404 JSON.

Fault mode (off by default; ``bench/chaos.py`` uses it): ``--fail-rate F``
answers a random share F of the chat requests (seeded RNG, ``--seed``) with
``--fail-status`` (500 by default) instead, ``--fail-rate 1 --fail-status 503``
makes an upstream that is down but still counts what it gets. ``--stats`` (or
any fault flag) adds ``GET /__stats``: a JSON object with the request counts
and the unix time of every chat request (``chat_times``) and of every failed
one (``fail_times``); ``/__stats`` itself is not counted.

All responses are prebuilt bytes, so the stub costs a few microseconds per
request and leaves the CPU to the gateway under test.

Run it in its own process::

    python bench/stub_upstream.py --port 18001 [--host 127.0.0.1]

It prints ``READY <port>`` on stdout once it listens.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import sys
import time

MODEL = "bench-model"

_CHAT_BODY = json.dumps(
    {
        "id": "chatcmpl-bench0000000000000000000000",
        "object": "chat.completion",
        "created": 1700000000,
        "model": MODEL,
        "system_fingerprint": "fp_bench",
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": "Hello! This is a fixed reply from the benchmark stub.",
                    "refusal": None,
                },
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": {
            "prompt_tokens": 42,
            "completion_tokens": 12,
            "total_tokens": 54,
            "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
            "completion_tokens_details": {
                "reasoning_tokens": 0,
                "audio_tokens": 0,
                "accepted_prediction_tokens": 0,
                "rejected_prediction_tokens": 0,
            },
        },
    },
    separators=(",", ":"),
).encode()

_MODELS_BODY = json.dumps(
    {
        "object": "list",
        "data": [{"id": MODEL, "object": "model", "created": 1700000000, "owned_by": "bench"}],
    },
    separators=(",", ":"),
).encode()

_NOT_FOUND_BODY = b'{"error":{"message":"not found","type":"invalid_request_error","code":"not_found"}}'


def _stream_body() -> bytes:
    base = {
        "id": "chatcmpl-bench0000000000000000000000",
        "object": "chat.completion.chunk",
        "created": 1700000000,
        "model": MODEL,
        "system_fingerprint": "fp_bench",
    }
    chunks = [
        {
            **base,
            "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}],
        },
        {
            **base,
            "choices": [{"index": 0, "delta": {"content": "Hello! This is a fixed reply"}, "finish_reason": None}],
        },
        {
            **base,
            "choices": [{"index": 0, "delta": {"content": " from the benchmark stub."}, "finish_reason": None}],
        },
        {**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]},
        {**base, "choices": [], "usage": {"prompt_tokens": 42, "completion_tokens": 12, "total_tokens": 54}},
    ]
    out = b"".join(b"data: " + json.dumps(c, separators=(",", ":")).encode() + b"\n\n" for c in chunks)
    return out + b"data: [DONE]\n\n"


def _response(status: bytes, body: bytes, content_type: bytes = b"application/json") -> bytes:
    return (
        b"HTTP/1.1 " + status + b"\r\n"
        b"content-type: " + content_type + b"\r\n"
        b"content-length: " + str(len(body)).encode() + b"\r\n"
        b"connection: keep-alive\r\n"
        b"\r\n" + body
    )


RESP_CHAT = _response(b"200 OK", _CHAT_BODY)
RESP_STREAM = _response(b"200 OK", _stream_body(), b"text/event-stream")
RESP_MODELS = _response(b"200 OK", _MODELS_BODY)
RESP_404 = _response(b"404 Not Found", _NOT_FOUND_BODY)
RESP_400 = _response(b"400 Bad Request", b'{"error":{"message":"bad request"}}')

_STATS = {"requests": 0}

# Fault mode (see the module docstring); None: off, the default.
_FAULT: dict | None = None


def _fault_answer(path: bytes, method: bytes) -> bytes | None:
    """The response in fault/stats mode for this request, or None to answer as usual."""
    f = _FAULT
    assert f is not None
    if path == b"/__stats" and method == b"GET":
        return _response(b"200 OK", json.dumps(f["stats"], separators=(",", ":")).encode())
    st = f["stats"]
    st["requests"] += 1
    if method == b"POST" and path.endswith(b"/chat/completions"):
        now = time.time()
        st["chat"] += 1
        st["chat_times"].append(now)
        if f["rate"] > 0 and (f["rate"] >= 1 or f["rng"].random() < f["rate"]):
            st["failed"] += 1
            st["fail_times"].append(now)
            return f["resp"]
        st["ok"] += 1
    return None


class StubProtocol(asyncio.Protocol):
    __slots__ = ("buf", "transport")

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        buf = self.buf
        buf += data
        out = []
        while True:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                break
            head = bytes(buf[:end])
            line_end = head.find(b"\r\n")
            request_line = head if line_end < 0 else head[:line_end]
            parts = request_line.split(b" ", 2)
            if len(parts) < 2:
                out.append(RESP_400)
                del buf[:]
                break
            method, path = parts[0], parts[1]
            # Headers: only Content-Length / Transfer-Encoding / Connection matter.
            length = 0
            chunked = False
            close = False
            if line_end >= 0:
                for hline in head[line_end + 2 :].split(b"\r\n"):
                    colon = hline.find(b":")
                    if colon <= 0:
                        continue
                    name = hline[:colon].strip().lower()
                    if name == b"content-length":
                        length = int(hline[colon + 1 :])
                    elif name == b"transfer-encoding":
                        chunked = b"chunked" in hline[colon + 1 :].lower()
                    elif name == b"connection":
                        close = b"close" in hline[colon + 1 :].lower()
            body_start = end + 4
            if chunked:
                body, consumed = _read_chunked(buf, body_start)
                if consumed < 0:
                    break  # need more data
                del buf[:consumed]
            else:
                if len(buf) - body_start < length:
                    break  # need more data
                body = bytes(buf[body_start : body_start + length])
                del buf[: body_start + length]
            _STATS["requests"] += 1
            q = path.find(b"?")
            if q >= 0:
                path = path[:q]
            if _FAULT is not None and (fault := _fault_answer(path, method)) is not None:
                out.append(fault)
            elif method == b"POST" and path.endswith(b"/chat/completions"):
                if b'"stream"' in body and _wants_stream(body):
                    out.append(RESP_STREAM)
                else:
                    out.append(RESP_CHAT)
            elif method == b"GET" and path.endswith(b"/models"):
                out.append(RESP_MODELS)
            else:
                out.append(RESP_404)
            if close:
                self.transport.write(b"".join(out))  # type: ignore[union-attr]
                self.transport.close()  # type: ignore[union-attr]
                return
        if out:
            self.transport.write(out[0] if len(out) == 1 else b"".join(out))  # type: ignore[union-attr]


def _wants_stream(body: bytes) -> bool:
    try:
        return bool(json.loads(body).get("stream"))
    except Exception:
        return False


def _read_chunked(buf: bytearray, pos: int) -> tuple[bytes, int]:
    """Decode a chunked body starting at ``pos``; return (body, end) or (b"", -1)."""
    parts = []
    while True:
        eol = buf.find(b"\r\n", pos)
        if eol < 0:
            return b"", -1
        size = int(bytes(buf[pos:eol]).split(b";", 1)[0], 16)
        pos = eol + 2
        if size == 0:
            # skip trailers up to the blank line
            end = buf.find(b"\r\n", pos)
            while end >= 0 and end != pos:
                pos = end + 2
                end = buf.find(b"\r\n", pos)
            if end < 0:
                return b"", -1
            return b"".join(parts), end + 2
        if len(buf) < pos + size + 2:
            return b"", -1
        parts.append(bytes(buf[pos : pos + size]))
        pos += size + 2


def install_uvloop() -> str:
    try:
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
        return "uvloop"
    except ImportError:
        return "asyncio"


async def serve(host: str, port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(StubProtocol, host, port, backlog=1024, reuse_address=True)
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    sys.stdout.write(f"READY {port}\n")
    sys.stdout.flush()
    t0 = time.monotonic()
    await stop.wait()
    server.close()
    sys.stderr.write(f"stub: served {_STATS['requests']} requests in {time.monotonic() - t0:.1f}s\n")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--cpu", type=int, default=None, help="pin this process to one CPU")
    ap.add_argument("--fail-rate", type=float, default=0.0, help="share of chat requests answered with an error")
    ap.add_argument("--fail-status", type=int, default=500, help="status of those errors (default 500)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the RNG that picks the failing requests")
    ap.add_argument("--stats", action="store_true", help="serve GET /__stats (implied by --fail-rate)")
    args = ap.parse_args(argv)
    if args.cpu is not None:
        os.sched_setaffinity(0, {args.cpu})
    if args.fail_rate > 0 or args.stats:
        import random

        global _FAULT
        reason = {500: "Internal Server Error", 502: "Bad Gateway", 503: "Service Unavailable"}.get(
            args.fail_status, "Error"
        )
        err = json.dumps(
            {"error": {"message": f"stub: injected {args.fail_status}", "type": "server_error", "code": None}},
            separators=(",", ":"),
        ).encode()
        _FAULT = {
            "rate": args.fail_rate,
            "rng": random.Random(args.seed),
            "resp": _response(f"{args.fail_status} {reason}".encode(), err),
            "stats": {
                "fail_rate": args.fail_rate,
                "fail_status": args.fail_status,
                "seed": args.seed,
                "requests": 0,
                "chat": 0,
                "ok": 0,
                "failed": 0,
                "chat_times": [],
                "fail_times": [],
            },
        }
    install_uvloop()
    asyncio.run(serve(args.host, args.port))


if __name__ == "__main__":
    main()
