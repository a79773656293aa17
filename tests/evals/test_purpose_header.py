"""An HTTP client marks a serving as an eval's with `X-Modelplane-Purpose: eval`; nothing else does."""

from __future__ import annotations

from typing import Any

import pytest

from modelplane.server.hotpath import HotPath
from modelplane.serving.state import Inbound, Serving


async def inbound(headers: list[tuple[bytes, bytes]]) -> Inbound:
    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"{}"}

    async def nowhere(scope: Any, receive: Any, send: Any) -> None:
        raise AssertionError("not routed here")

    hot = HotPath({}, nowhere, lambda: None, max_body=1024)  # type: ignore[arg-type, return-value]
    return await hot._inbound({"headers": headers}, receive)


@pytest.mark.parametrize(
    ("value", "purpose"), [(b"eval", "eval"), (b"EVAL", "eval"), (b"serve", "serve"), (b"anything", "serve")]
)
async def test_the_purpose_header(value: bytes, purpose: str) -> None:
    got = await inbound([(b"x-modelplane-purpose", value)])
    assert got.purpose == purpose
    assert Serving.begin("chat", got).purpose == purpose


async def test_without_the_header_a_serving_serves() -> None:
    got = await inbound([(b"x-modelplane-feature", b"chat")])
    assert (got.purpose, got.feature) == ("serve", "chat")
