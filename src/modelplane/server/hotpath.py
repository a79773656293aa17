"""The serving endpoints as a bare ASGI app: the path every request pays for, kept lean.

Everything else (health, metrics, admin) is a Starlette app behind it. Starlette's request
and response objects and middleware stack cost more than the rest of the gateway's own
work on a pass-through call, so the two serving endpoints speak ASGI directly.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from modelplane.errors import MethodNotAllowed, ModelplaneError, PayloadTooLarge
from modelplane.server.errors import error_response, internal_error
from modelplane.serving.gateway import Gateway
from modelplane.serving.respond import Outcome
from modelplane.serving.state import Inbound

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
Pipeline = Callable[[Gateway, Inbound], Awaitable[Outcome]]


class HotPath:
    """Routes `POST` to the serving pipelines by exact path; everything else goes to `fallback`."""

    def __init__(
        self, routes: dict[str, Pipeline], fallback: ASGIApp, gateway: Callable[[], Gateway], max_body: int
    ) -> None:
        self.routes = routes
        self.fallback = fallback
        self.gateway = gateway
        self.max_body = max_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        run = self.routes.get(scope["path"]) if scope["type"] == "http" else None
        if run is None:
            await self.fallback(scope, receive, send)
            return
        if scope["method"] != "POST":
            wrong = MethodNotAllowed(f"{scope['method']} {scope['path']} is not served; use POST", ("POST",))
            await error_response(wrong)(scope, receive, send)
            return
        try:
            inbound = await self._inbound(scope, receive)
            outcome = await run(self.gateway(), inbound)
        except ModelplaneError as exc:
            await error_response(exc)(scope, receive, send)
            return
        except Exception:
            await internal_error()(scope, receive, send)
            return
        await send({"type": "http.response.start", "status": outcome.status, "headers": _encode(outcome.headers)})
        if outcome.chunks is None:
            await send({"type": "http.response.body", "body": outcome.body or b""})
        else:
            await _stream(outcome, receive, send)

    async def _inbound(self, scope: Scope, receive: Receive) -> Inbound:
        inbound = Inbound(b"")
        declared = 0
        for name, value in scope["headers"]:
            if name == b"authorization":
                inbound.authorization = value.decode("latin-1")
            elif name == b"x-modelplane-feature":
                inbound.feature = value.decode("latin-1")
            elif name == b"x-modelplane-serving":
                inbound.serving_id = value.decode("latin-1")
            elif name == b"x-modelplane-purpose" and value.lower() == b"eval":
                inbound.purpose = "eval"  # the only other purpose; anything else stays "serve"
            elif name == b"content-length" and value.isdigit():
                declared = int(value)
        if declared > self.max_body:
            raise PayloadTooLarge(f"request body is {declared} bytes; the limit is {self.max_body}")
        inbound.body = await _read_body(receive, self.max_body)
        return inbound


async def _read_body(receive: Receive, limit: int) -> bytes:
    message = await receive()
    body: bytes = message.get("body", b"")
    if not message.get("more_body"):
        if len(body) > limit:
            raise PayloadTooLarge(f"request body is over the limit of {limit} bytes")
        return body
    parts = [body]
    size = len(body)
    while message.get("more_body"):
        message = await receive()
        part = message.get("body", b"")
        size += len(part)
        if size > limit:
            raise PayloadTooLarge(f"request body is over the limit of {limit} bytes")
        parts.append(part)
    return b"".join(parts)


async def _stream(outcome: Outcome, receive: Receive, send: Send) -> None:
    """Send SSE chunks; if the client disconnects, stop pulling from upstream at once."""
    assert outcome.chunks is not None
    chunks = outcome.chunks

    async def pump() -> None:
        async for chunk in chunks:
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b""})

    async def watch() -> None:
        while (await receive())["type"] != "http.disconnect":
            pass

    pumping = asyncio.ensure_future(pump())
    watching = asyncio.ensure_future(watch())
    try:
        await asyncio.wait((pumping, watching), return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (pumping, watching):
            task.cancel()
        # A client that went away makes `send` raise OSError; the serving is recorded as client_closed.
        with contextlib.suppress(asyncio.CancelledError, OSError):
            await pumping
        with contextlib.suppress(asyncio.CancelledError):
            await watching
        await chunks.aclose()


def _encode(headers: dict[str, str]) -> list[tuple[bytes, bytes]]:
    return [(k.encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]
