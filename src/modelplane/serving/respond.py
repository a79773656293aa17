"""Stage 12, respond: the OpenAI-compatible body and the headers that say what happened."""

from __future__ import annotations

from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass, field

import orjson

from modelplane.errors import ProviderError
from modelplane.ledger.records import ServingRecord
from modelplane.providers.base import JSON, Answer, ChatRequest, Stream, Usage
from modelplane.serving.cache import CacheHit
from modelplane.serving.record import Recorder
from modelplane.serving.replay import Replay
from modelplane.serving.state import Serving

SSE_HEADERS = {"content-type": "text/event-stream", "cache-control": "no-cache", "x-accel-buffering": "no"}


@dataclass(slots=True)
class Outcome:
    """What the HTTP edge sends: a body, or (for streams) SSE chunks."""

    status: int
    headers: dict[str, str]
    body: bytes | None = None
    chunks: AsyncGenerator[bytes, None] | None = field(default=None)


def headers_for(serving: Serving, record: ServingRecord | None) -> dict[str, str]:
    headers = {
        "x-modelplane-serving": serving.serving_id,
        "x-modelplane-cache": serving.cache,
        "x-modelplane-fallback": str(serving.fallback_depth),
    }
    if serving.model is not None:
        headers["x-modelplane-model"] = serving.model
    if record is not None:
        headers["x-modelplane-cost-usd"] = "unpriced" if record.cost_usd is None else f"{record.cost_usd:.10f}"
    return headers


def answer(serving: Serving, reply: Answer, record: ServingRecord) -> Outcome:
    body = reply.raw if reply.raw is not None else orjson.dumps(reply.body)
    return Outcome(200, {"content-type": "application/json", **headers_for(serving, record)}, body)


def json(serving: Serving, body: JSON, record: ServingRecord) -> Outcome:
    return Outcome(200, {"content-type": "application/json", **headers_for(serving, record)}, orjson.dumps(body))


async def stream(
    serving: Serving,
    reply: Stream,
    recorder: Recorder,
    version: str,
    on_done: Callable[[ServingRecord], None] | None = None,
) -> Outcome:
    """SSE from a stream. The first chunk is read before headers go out, so an upstream that fails
    before its first byte still yields a proper HTTP error. After that, a break ends the stream
    with an explicit error event, never a silent truncation, and the ledger says `stream_cut`.
    `on_done` sees the record of a stream that ended normally (the cache stores it then)."""
    chunks = reply.chunks()
    try:
        first: bytes | None = await anext(chunks)
    except StopAsyncIteration:
        first = None

    async def sse() -> AsyncGenerator[bytes, None]:
        try:
            if first is not None:
                yield b"data: " + first + b"\n\n"
            async for chunk in chunks:
                yield b"data: " + chunk + b"\n\n"
            record = await recorder.record(serving, version)
            if on_done is not None:
                on_done(record)
            yield cost_comment(record) + b"data: [DONE]\n\n"
        except ProviderError as exc:
            serving.fail(exc, status="stream_cut")
            await recorder.record(serving, version)
            yield error_event(exc)
        except BaseException:
            # The client went away: account for the serving, then close the upstream too.
            serving.status = "client_closed"
            recorder.record_nowait(serving, version)
            await reply.aclose()
            raise

    return Outcome(200, {**SSE_HEADERS, **headers_for(serving, None)}, chunks=sse())


async def cached(serving: Serving, hit: CacheHit, body: JSON, recorder: Recorder, version: str) -> Outcome:
    """A cache hit: no call, cost 0, and the ledger records what it saved. Streams are replayed."""
    serving.cache, serving.model, serving.saved_usd = hit.kind, hit.entry.model, hit.entry.cost_usd
    answer = Answer(hit.entry.body, Usage(), hit.entry.model)
    if body.get("stream"):
        return await stream(
            serving, Replay(answer, include_usage=ChatRequest(body, "").include_usage), recorder, version
        )
    record = await recorder.record(serving, version)
    return Outcome(
        200, {"content-type": "application/json", **headers_for(serving, record)}, orjson.dumps(hit.entry.body)
    )


def cost_comment(record: ServingRecord) -> bytes:
    """An SSE comment (ignored by clients) carrying the cost, which is known only at the end."""
    cost = "unpriced" if record.cost_usd is None else f"{record.cost_usd:.10f}"
    return f": x-modelplane-cost-usd {cost}\n\n".encode()


def error_event(exc: ProviderError) -> bytes:
    """The OpenAI SDKs raise on a data event whose object has an `error` key. Every message the
    adapters give says what broke and that it was upstream ("upstream closed the stream before it ended")."""
    error = {"message": exc.message, "type": "upstream_error", "code": str(exc.error_class)}
    return b"data: " + orjson.dumps({"error": error}) + b"\n\n"
