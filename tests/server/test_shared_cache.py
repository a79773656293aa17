"""Two gateway processes sharing one Redis share cache hits, exact and semantic, and purges."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from gateways import GatewayProcess
from services import REDIS_URL
from upstream import ScriptedUpstream

KEY = "shared-cache-key"
AUTH = {"authorization": f"Bearer {KEY}"}


def ask(gateway: GatewayProcess, question: str) -> httpx.Response:
    body = {"model": "faq", "messages": [{"role": "user", "content": question}], "temperature": 0}
    return httpx.post(f"{gateway.url}/v1/chat/completions", json=body, headers=AUTH, timeout=30)


def semantic_entries(gateway: GatewayProcess) -> int:
    stats = httpx.get(f"{gateway.url}/admin/cache/stats", headers=AUTH).json()
    return sum(f["by_kind"].get("semantic", 0) for f in stats["features"])


def wait_until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "the other gateway never saw the entry"
        time.sleep(0.05)


def test_two_gateways_share_exact_and_semantic_hits_through_redis(
    tmp_path: Path, redis_prefix: str, launch_gateway: Callable[..., GatewayProcess]
) -> None:
    with ScriptedUpstream.in_thread() as up:
        config = tmp_path / "modelplane.yaml"
        config.write_text(
            f"""
providers: {{up: {{kind: openai, base_url: "{up.base_url}"}}}}
models: {{small: {{provider: up, price: {{input: 1, output: 1}}}}}}
features:
  faq: {{route: {{models: [small]}}, cache: {{exact: true, semantic: {{threshold: 0.8}}}}}}
keys:
  - {{hash: "sha256:{hashlib.sha256(KEY.encode()).hexdigest()}", tenant: t, tier: default, admin: true}}
redis: {{url: "{REDIS_URL}", prefix: "{redis_prefix}"}}
cache: {{backend: redis}}
"""
        )
        a = launch_gateway(tmp_path, tmp_path / "home-a", config)
        b = launch_gateway(tmp_path, tmp_path / "home-b", config)
        first = ask(a, "How do I reset my password?")
        assert first.status_code == 200 and first.headers["x-modelplane-cache"] == "miss"

        exact = ask(b, "How do I reset my password?")  # straight after: read from Redis on B's local miss
        assert exact.status_code == 200 and exact.headers["x-modelplane-cache"] == "exact"
        assert exact.json()["choices"][0]["message"] == first.json()["choices"][0]["message"]

        wait_until(lambda: semantic_entries(b) == 1)  # B's vector index followed A's store
        paraphrase = ask(b, "How can I reset my password?")
        assert paraphrase.headers["x-modelplane-cache"] == "semantic"
        assert up.count() == 1

        purged = httpx.post(f"{b.url}/admin/cache/purge?feature=faq", headers=AUTH).json()
        assert purged["backend"] == "redis" and purged["purged"] >= 1
        wait_until(lambda: semantic_entries(a) == 0)
        assert ask(a, "How do I reset my password?").headers["x-modelplane-cache"] == "miss"
        assert up.count() == 2
        assert a.stop() == 0 and b.stop() == 0
