"""Two gateway processes sharing one Redis agree on an open breaker."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

import httpx

from gateways import GatewayProcess
from services import REDIS_URL
from upstream import ScriptedUpstream, error

KEY = "shared-key"


def ask(gateway: GatewayProcess) -> httpx.Response:
    body = {"model": "f", "messages": [{"role": "user", "content": "hi"}]}
    return httpx.post(f"{gateway.url}/v1/chat/completions", json=body, headers={"authorization": f"Bearer {KEY}"})


def test_a_breaker_opened_by_one_worker_stops_the_other(
    tmp_path: Path, redis_prefix: str, launch_gateway: Callable[..., GatewayProcess]
) -> None:
    with ScriptedUpstream.in_thread() as dead, ScriptedUpstream.in_thread() as healthy:
        dead.default = error(500)
        config = tmp_path / "modelplane.yaml"
        config.write_text(
            f"""
providers:
  dead: {{kind: openai, base_url: "{dead.base_url}"}}
  healthy: {{kind: openai, base_url: "{healthy.base_url}"}}
models:
  dead: {{provider: dead, price: {{input: 1, output: 1}}}}
  healthy: {{provider: healthy, price: {{input: 1, output: 1}}}}
features:
  f: {{route: {{models: [dead, healthy]}}}}
keys:
  - {{hash: "sha256:{hashlib.sha256(KEY.encode()).hexdigest()}", tenant: t, tier: default, admin: true}}
resilience:
  retry: {{attempts: 1}}
  breaker: {{window: 60, min_requests: 4, failure_rate: 0.5, cooldown: 300}}
redis: {{url: "{REDIS_URL}", prefix: "{redis_prefix}"}}
"""
        )
        first = launch_gateway(tmp_path, tmp_path / "home-1", config)
        second = launch_gateway(tmp_path, tmp_path / "home-2", config)
        for _ in range(10):
            assert ask(first).status_code == 200
        assert dead.count() == 4  # the first worker opened the breaker after min_requests failures
        for _ in range(10):
            assert ask(second).status_code == 200
        assert dead.count() == 4  # the second worker never sent the dead upstream a request
        health = httpx.get(f"{second.url}/admin/health", headers={"authorization": f"Bearer {KEY}"}).json()
        states = {d["deployment"]: d["breaker"] for d in health["deployments"]}
        assert states == {"dead@dead": "open", "healthy@healthy": "closed"}
        metrics = httpx.get(f"{second.url}/metrics").text
        assert 'modelplane_breaker_open{deployment="dead@dead"} 1.0' in metrics
        assert first.stop() == 0 and second.stop() == 0
