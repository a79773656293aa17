"""What HTTP adapters share: a keep-alive client session, error classification, SSE reading.

aiohttp is the upstream client: on the gateway overhead benchmark its per-request cost is
a fraction of httpx's, which matters because every serving pays it.
"""

from __future__ import annotations

import email.utils
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from typing import Any

import aiohttp
import orjson

from modelplane.errors import ErrorClass, ProviderError
from modelplane.providers.base import JSON, Provider, Timeouts

_CONTEXT_MARKERS = ("context_length", "context length", "maximum context", "too many tokens", "prompt is too long")


class HttpProvider(Provider):
    """A provider reached over HTTP: owns one pooled session and POSTs JSON to `base_url`."""

    def __init__(self, name: str, *, base_url: str, headers: dict[str, str]) -> None:
        super().__init__(name)
        self.base_url = base_url.rstrip("/")
        self._headers = headers
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        if self._session is None:
            self._session = new_session(self._headers)

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def post(self, path: str, body: JSON, timeouts: Timeouts) -> aiohttp.ClientResponse:
        """POST and return the open response once its status is 2xx; classify anything else."""
        if self._session is None:
            await self.start()
        assert self._session is not None  # start() just made it
        # One block, but the phases stay apart: aiohttp raises a connect timeout for the TCP/TLS
        # connect and a socket-read timeout for the wait for the response headers.
        with classified("response", timeouts):
            response = await self._session.post(
                self.base_url + path, data=orjson.dumps(body), timeout=client_timeout(timeouts)
            )
            if response.status >= 300:
                async with response:
                    raise classify_status(response.status, response.headers, await response.read())
        return response


def new_session(headers: dict[str, str], *, limit: int = 256) -> aiohttp.ClientSession:
    """A pooled keep-alive session; timeouts are set per request."""
    connector = aiohttp.TCPConnector(limit=limit, limit_per_host=limit, keepalive_timeout=60, ttl_dns_cache=300)
    return aiohttp.ClientSession(
        connector=connector,
        headers=headers,
        json_serialize=lambda obj: orjson.dumps(obj).decode(),
        skip_auto_headers=("User-Agent",),
        auto_decompress=True,
    )


def client_timeout(timeouts: Timeouts) -> aiohttp.ClientTimeout:
    """Connect, first byte (sock_read also bounds every later gap), and the whole call."""
    return aiohttp.ClientTimeout(
        total=timeouts.total, sock_connect=timeouts.connect, connect=timeouts.connect, sock_read=timeouts.first_token
    )


def parse_retry_after(headers: Any) -> float | None:
    """Seconds to wait, from `retry-after-ms`, `retry-after` (seconds or HTTP date)."""
    value = headers.get("retry-after-ms")
    if value:
        try:
            return max(0.0, float(value) / 1000.0)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def error_message(body: bytes) -> str:
    """The upstream's own error message when the body carries one, else the body's start."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return body[:300].decode(errors="replace").strip()
    if isinstance(data, dict):
        err = data.get("error", data)
        if isinstance(err, dict) and isinstance(err.get("message"), str):
            return str(err["message"])
        if isinstance(err, str):
            return err
    return body[:300].decode(errors="replace").strip()


def classify_status(status: int, headers: Any, body: bytes) -> ProviderError:
    """Turn an upstream's non-2xx answer into a classified `ProviderError`."""
    message = error_message(body)
    lowered = message.lower()
    retry_after = parse_retry_after(headers)
    if status == 429:
        error_class = ErrorClass.RATE_LIMIT
    elif status in (401, 403):
        error_class = ErrorClass.AUTH
    elif status in (408, 504):
        error_class = ErrorClass.TIMEOUT
    elif status == 413 or any(marker in lowered for marker in _CONTEXT_MARKERS):
        error_class = ErrorClass.CONTEXT_LENGTH
    elif 400 <= status < 500:
        error_class = ErrorClass.BAD_REQUEST
    else:
        # 529 is Anthropic's "overloaded"; like any 5xx it is the upstream's fault.
        error_class = ErrorClass.SERVER_ERROR
    return ProviderError(error_class, f"upstream answered {status}: {message}", status=status, retry_after=retry_after)


# What the client was waiting for, as a timeout or a broken connection names it.
_PHASES = {
    "response": "waiting for the response headers",
    "read": "reading the response body",
    "stream": "waiting for the next stream chunk",
    "call": "during the call",
}


@contextmanager
def classified(during: str = "call", timeouts: Timeouts | None = None) -> Iterator[None]:
    """Translate transport exceptions raised inside the block into `ProviderError`.

    Messages name the phase and the limit that ran out (`timeouts`, when given), and never
    carry aiohttp's own exception text, which is about its internals (`TransferEncodingError: 400`).
    """
    phase = _PHASES.get(during, during)
    try:
        yield
    except ProviderError:
        raise
    except aiohttp.ConnectionTimeoutError as exc:
        limit = None if timeouts is None else f"timeout.connect: {_seconds(timeouts.connect)}"
        raise _timed_out("during connect", limit) from exc
    except aiohttp.SocketTimeoutError as exc:
        limit = None if timeouts is None else f"no byte within timeout.first_token: {_seconds(timeouts.first_token)}"
        raise _timed_out(phase, limit) from exc
    except TimeoutError as exc:  # aiohttp's `total`, for the whole call
        limit = None if timeouts is None else f"the call's timeout.total of {_seconds(timeouts.total)} ran out"
        raise _timed_out(phase, limit) from exc
    except aiohttp.ClientConnectorError as exc:
        raise ProviderError(ErrorClass.CONNECTION, f"cannot connect to upstream: {exc.os_error or exc}") from exc
    except (aiohttp.ClientPayloadError, aiohttp.ServerDisconnectedError, ConnectionResetError) as exc:
        if during == "stream":
            raise ProviderError(ErrorClass.STREAM_CUT, "upstream closed the stream before it ended") from exc
        raise ProviderError(ErrorClass.CONNECTION, f"upstream closed the connection {phase}") from exc
    except aiohttp.ClientError as exc:
        raise ProviderError(ErrorClass.CONNECTION, f"upstream transport error {phase}: {exc}") from exc


def _timed_out(phase: str, limit: str | None) -> ProviderError:
    return ProviderError(ErrorClass.TIMEOUT, f"upstream timed out {phase}" + ("" if limit is None else f" ({limit})"))


def _seconds(value: float) -> str:
    return f"{round(value, 2):g} s"


async def read_body(response: aiohttp.ClientResponse, timeouts: Timeouts | None = None) -> bytes:
    """The whole body of an open response, then the connection goes back to the pool."""
    with classified("read", timeouts):
        try:
            return await response.read()
        finally:
            response.release()


def decode_json(body: bytes) -> dict[str, Any]:
    """Parse an upstream 2xx body; anything but a JSON object is a bad response."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise ProviderError(ErrorClass.BAD_RESPONSE, f"upstream sent malformed JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise ProviderError(ErrorClass.BAD_RESPONSE, "upstream sent JSON that is not an object")
    return data


async def iter_sse(
    response: aiohttp.ClientResponse, timeouts: Timeouts | None = None
) -> AsyncIterator[tuple[str, bytes]]:
    """Yield (event, data) of each server-sent event; the default event name is 'message'."""
    event = "message"
    data: list[bytes] = []
    with classified("stream", timeouts):
        async for raw in response.content:
            line = raw.rstrip(b"\r\n")
            if not line:
                if data:
                    yield event, b"\n".join(data)
                event, data = "message", []
                continue
            if line.startswith(b":"):
                continue
            name, _, value = line.partition(b":")
            if value.startswith(b" "):
                value = value[1:]
            if name == b"data":
                data.append(value)
            elif name == b"event":
                event = value.decode()
        if data:
            yield event, b"\n".join(data)
