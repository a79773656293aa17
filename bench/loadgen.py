"""A cheap closed-loop HTTP/1.1 load generator for chat-completions benchmarks.

asyncio (uvloop when available) with raw keep-alive connections, one
connection per in-flight slot. Every slot sends the same small (~300 byte)
``POST /v1/chat/completions``, waits for the full response (``Content-Length``
or chunked body, parsed properly so keep-alive works against uvicorn) and
records the latency with ``time.perf_counter_ns``.

Either ``--requests N`` (N requests in total, spread over the slots) or
``--duration S`` (every slot keeps going until S seconds have passed).
Prints one JSON object on stdout: counts, status codes, wall time, req/s and
latency percentiles in milliseconds (plus the raw latencies with ``--raw``).

    python bench/loadgen.py --url http://127.0.0.1:4000 --concurrency 8 \\
        --duration 10 --model bench --api-key sk-bench-key
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from urllib.parse import urlsplit

PATH = "/v1/chat/completions"


def build_body(model: str) -> bytes:
    body = {
        "model": model,
        "messages": [
            {"role": "system", "content": "You are a concise assistant used in a gateway benchmark."},
            {"role": "user", "content": "Say hello in one short sentence, please. This prompt is fixed."},
        ],
        "max_tokens": 16,
        "temperature": 0,
        "user": "bench-user",
    }
    return json.dumps(body, separators=(",", ":")).encode()


def build_request(host: str, port: int, model: str, api_key: str | None) -> bytes:
    body = build_body(model)
    lines = [
        f"POST {PATH} HTTP/1.1",
        f"Host: {host}:{port}",
        "User-Agent: modelplane-bench/1",
        "Accept: application/json",
        "Content-Type: application/json",
        f"Content-Length: {len(body)}",
    ]
    if api_key:
        lines.append(f"Authorization: Bearer {api_key}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


class ProtocolError(Exception):
    pass


def valid_chat_completion(body: bytes) -> bool:
    """A 200 body that is a ``chat.completion`` with at least one choice carrying a message."""
    try:
        obj = json.loads(body)
        choices = obj["choices"]
        return obj.get("object") == "chat.completion" and bool(choices) and isinstance(choices[0]["message"], dict)
    except Exception:
        return False


def _expire(fut: asyncio.Future) -> None:
    if not fut.done():
        fut.set_exception(TimeoutError("request timed out"))


class ClientConn(asyncio.Protocol):
    """One keep-alive connection; one request outstanding at a time."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.waiter: asyncio.Future | None = None
        self.closed = False
        self.will_close = False

    # asyncio callbacks -------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(exc or ConnectionError("connection closed by peer"))

    def data_received(self, data: bytes) -> None:
        self.buf += data
        if self.waiter is None or self.waiter.done():
            return
        try:
            res = self._try_parse()
        except Exception as e:  # malformed response
            self.waiter.set_exception(ProtocolError(str(e)))
            return
        if res is not None:
            self.waiter.set_result(res)

    # parsing -----------------------------------------------------------
    def _try_parse(self) -> tuple[int, bytes] | None:
        buf = self.buf
        end = buf.find(b"\r\n\r\n")
        if end < 0:
            return None
        head = bytes(buf[:end])
        lines = head.split(b"\r\n")
        status_parts = lines[0].split(b" ", 2)
        if len(status_parts) < 2 or not status_parts[0].startswith(b"HTTP/1."):
            raise ProtocolError(f"bad status line {lines[0][:80]!r}")
        status = int(status_parts[1])
        length = -1
        chunked = False
        close = status_parts[0] == b"HTTP/1.0"
        for line in lines[1:]:
            colon = line.find(b":")
            if colon <= 0:
                continue
            name = line[:colon].strip().lower()
            value = line[colon + 1 :].strip().lower()
            if name == b"content-length":
                length = int(value)
            elif name == b"transfer-encoding":
                chunked = b"chunked" in value
            elif name == b"connection":
                if b"close" in value:
                    close = True
                elif b"keep-alive" in value:
                    close = False
        pos = end + 4
        if chunked:
            parts = []
            while True:
                eol = buf.find(b"\r\n", pos)
                if eol < 0:
                    return None
                size = int(bytes(buf[pos:eol]).split(b";", 1)[0], 16)
                pos = eol + 2
                if size == 0:
                    t = buf.find(b"\r\n", pos)
                    while t >= 0 and t != pos:  # trailers
                        pos = t + 2
                        t = buf.find(b"\r\n", pos)
                    if t < 0:
                        return None
                    pos = t + 2
                    break
                if len(buf) < pos + size + 2:
                    return None
                parts.append(bytes(buf[pos : pos + size]))
                pos += size + 2
            body = b"".join(parts)
        elif length >= 0:
            if len(buf) < pos + length:
                return None
            body = bytes(buf[pos : pos + length])
            pos += length
        elif status in (204, 304) or 100 <= status < 200:
            body = b""
        else:
            raise ProtocolError("response without content-length or chunked encoding")
        del buf[:pos]
        if close:
            self.will_close = True
        return status, body

    # API ---------------------------------------------------------------
    def request(self, data: bytes) -> asyncio.Future:
        loop = asyncio.get_running_loop()
        self.waiter = loop.create_future()
        self.transport.write(data)  # type: ignore[union-attr]
        if self.buf:  # pragma: no cover - pipelined leftovers (should not happen)
            self.data_received(b"")
        return self.waiter


async def run(args: argparse.Namespace) -> dict:
    u = urlsplit(args.url)
    host = u.hostname or "127.0.0.1"
    port = u.port or 80
    req = build_request(host, port, args.model, args.api_key)
    loop = asyncio.get_running_loop()

    async def connect() -> ClientConn:
        _, proto = await loop.create_connection(ClientConn, host, port)
        return proto  # type: ignore[return-value]

    latencies: list[int] = []
    statuses: dict[int, int] = {}
    errors: dict[str, int] = {}
    samples: list[str] = []
    invalid = [0]
    check_body = args.check_body
    remaining = [args.requests]
    reconnects = [0]
    timeout = args.timeout
    deadline_ns = [0]
    last_done = [0]

    async def one_slot(conn: ClientConn, count_results: bool, budget: list[int], until_ns: int) -> None:
        perf = time.perf_counter_ns
        while True:
            if until_ns:
                if perf() >= until_ns:
                    return
            else:
                if budget[0] <= 0:
                    return
                budget[0] -= 1
            if conn.closed or conn.will_close:
                if conn.transport is not None:
                    conn.transport.close()
                conn = await connect()
                reconnects[0] += 1
            t0 = perf()
            fut = conn.request(req)
            timer = loop.call_later(timeout, _expire, fut)
            try:
                status, body = await fut
            except Exception as e:
                timer.cancel()
                key = type(e).__name__
                errors[key] = errors.get(key, 0) + 1
                if len(samples) < 3:
                    samples.append(f"{key}: {e}")
                if conn.transport is not None:
                    conn.transport.close()
                conn.closed = True
                await asyncio.sleep(0.01)
                continue
            t1 = perf()
            timer.cancel()
            if not count_results:
                continue
            statuses[status] = statuses.get(status, 0) + 1
            if status == 200 and check_body and not valid_chat_completion(body):
                invalid[0] += 1
                if len(samples) < 3:
                    samples.append(f"invalid 200 body: {body[:300].decode(errors='replace')}")
            elif status == 200:
                latencies.append(t1 - t0)
                last_done[0] = t1
            elif len(samples) < 3:
                samples.append(f"HTTP {status}: {body[:300].decode(errors='replace')}")

    conns = [await connect() for _ in range(args.concurrency)]

    # Warm-up (not recorded): spreads connection set-up and first-request costs.
    if args.warmup:
        wbudget = [args.warmup]
        await asyncio.gather(*(one_slot(c, False, wbudget, 0) for c in conns))
        conns = [c if not (c.closed or c.will_close) else await connect() for c in conns]

    start = time.perf_counter_ns()
    if args.duration:
        deadline_ns[0] = start + int(args.duration * 1e9)
        await asyncio.gather(*(one_slot(c, True, [0], deadline_ns[0]) for c in conns))
    else:
        await asyncio.gather(*(one_slot(c, True, remaining, 0) for c in conns))
    end = time.perf_counter_ns()
    for c in conns:
        if c.transport is not None:
            c.transport.close()

    ok = len(latencies)
    wall = (end - start) / 1e9
    lat_sorted = sorted(latencies)

    def pct(p: float) -> float | None:
        if not lat_sorted:
            return None
        idx = min(len(lat_sorted) - 1, max(0, round(p / 100.0 * len(lat_sorted) + 0.5) - 1))
        return lat_sorted[idx] / 1e6

    out = {
        "url": args.url,
        "concurrency": args.concurrency,
        "mode": "duration" if args.duration else "requests",
        "ok": ok,
        "errors": sum(errors.values()),
        "error_kinds": errors,
        "statuses": {str(k): v for k, v in sorted(statuses.items())},
        "samples": samples,
        "reconnects": reconnects[0],
        "wall_s": wall,
        "rps": ok / wall if wall > 0 else 0.0,
        "p50_ms": pct(50),
        "p90_ms": pct(90),
        "p99_ms": pct(99),
        "p999_ms": pct(99.9),
        "max_ms": lat_sorted[-1] / 1e6 if lat_sorted else None,
        "mean_ms": (sum(lat_sorted) / len(lat_sorted) / 1e6) if lat_sorted else None,
        "request_bytes": len(req),
    }
    if check_body:
        out["invalid_200"] = invalid[0]
    if args.raw:
        out["latencies_ns"] = latencies
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--url", required=True, help="base URL, e.g. http://127.0.0.1:4000")
    ap.add_argument("--concurrency", "-c", type=int, default=1, help="requests in flight (= connections)")
    g = ap.add_mutually_exclusive_group(required=True)
    g.add_argument("--requests", "-n", type=int, default=0, help="total requests to send")
    g.add_argument("--duration", "-d", type=float, default=0.0, help="seconds to keep every slot busy")
    ap.add_argument("--warmup", type=int, default=0, help="unrecorded requests sent first")
    ap.add_argument("--model", default="bench-model")
    ap.add_argument("--api-key", default=None, help="sent as 'Authorization: Bearer KEY'")
    ap.add_argument("--timeout", type=float, default=30.0, help="per-request timeout in seconds")
    ap.add_argument(
        "--check-body",
        action="store_true",
        help="count a 200 as ok only if its body is a valid chat.completion (else in invalid_200)",
    )
    ap.add_argument("--raw", action="store_true", help="include raw latencies (ns) in the output")
    ap.add_argument("--cpu", type=int, default=None, help="pin this process to one CPU")
    args = ap.parse_args(argv)
    if args.cpu is not None:
        os.sched_setaffinity(0, {args.cpu})
    try:
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    except ImportError:
        pass
    res = asyncio.run(run(args))
    sys.stdout.write(json.dumps(res) + "\n")


if __name__ == "__main__":
    main()
