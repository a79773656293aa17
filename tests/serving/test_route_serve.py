"""Routing end to end: `modelplane serve` in front of the scripted upstream, driven by the openai SDK.
A cascade escalates over real HTTP, and the ledger holds both calls and the decision."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import openai

from modelplane.ledger.store import LedgerStore
from upstream import ScriptedUpstream, ok

if TYPE_CHECKING:
    from gateways import GatewayProcess

KEY = "mp-route-key-0001"


def write_config(root: Path, upstream_url: str) -> Path:
    key_hash = "sha256:" + hashlib.sha256(KEY.encode()).hexdigest()
    path = root / "modelplane.yaml"
    path.write_text(
        f"""\
providers:
  up: {{kind: openai, base_url: "{upstream_url}", api_key: sk-up}}
models:
  small: {{provider: up, name: gpt-up-small, price: {{input: 0.15, output: 0.60}}}}
  large: {{provider: up, name: gpt-up-large, price: {{input: 2.5, output: 10}}}}
features:
  answer:
    route: {{strategy: cascade, models: [small, large], accept: {{regex: "^ANSWER:"}}}}
  canary:
    route: {{strategy: weighted, split: {{small: 0, large: 100}}, sticky: tenant}}
keys:
  - {{hash: "{key_hash}", tenant: acme}}
ledger: {{url: "sqlite:///{root / "ledger.db"}"}}
resilience: {{retry: {{attempts: 1}}}}
""",
        encoding="utf-8",
    )
    return path


def test_a_cascade_and_a_canary_through_the_real_server(
    tmp_path: Path, launch_gateway: Callable[..., GatewayProcess]
) -> None:
    with ScriptedUpstream.in_thread() as upstream:
        gateway = launch_gateway(tmp_path, tmp_path / "home", write_config(tmp_path, upstream.base_url))
        client = openai.OpenAI(base_url=gateway.url + "/v1", api_key=KEY, max_retries=0, timeout=10)
        upstream.script(ok("I think 4?"), ok("ANSWER: 4"))
        raw = client.chat.completions.with_raw_response.create(
            model="answer", messages=[{"role": "user", "content": "2+2?"}], stream=True
        )
        text = "".join(chunk.choices[0].delta.content or "" for chunk in raw.parse() if chunk.choices)
        assert text == "ANSWER: 4" and raw.headers["x-modelplane-model"] == "large"
        assert [r.json["model"] for r in upstream.requests] == ["gpt-up-small", "gpt-up-large"]
        assert all("stream" not in r.json for r in upstream.requests)  # checked whole, replayed as a stream
        canary = client.chat.completions.with_raw_response.create(
            model="canary", messages=[{"role": "user", "content": "hi"}]
        )
        assert canary.headers["x-modelplane-model"] == "large"
        assert gateway.stop() == 0, gateway.stderr
    rows, calls = asyncio.run(read_ledger(tmp_path / "ledger.db"))
    cascade = next(r for r in rows if r["feature"] == "answer")
    assert cascade["route_strategy"] == "cascade" and cascade["model"] == "large"
    assert cascade["route_reason"] == "cheapest first; small: does not match /^ANSWER:/; escalated"
    assert calls == ["small", "large"]
    canary_row = next(r for r in rows if r["feature"] == "canary")
    assert (canary_row["route_strategy"], canary_row["route_model"]) == ("weighted", "large")


async def read_ledger(path: Path) -> tuple[list[dict[str, object]], list[str]]:
    store = LedgerStore.from_url(f"sqlite:///{path}")
    try:
        rows = await store.servings()
        cascade = next(r for r in rows if r["feature"] == "answer")
        calls = [str(c["model"]) for c in await store.calls_for(str(cascade["id"]))]
        return rows, calls
    finally:
        await store.close()
