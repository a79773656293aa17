"""Reload: a valid file swaps in atomically (admin endpoint and SIGHUP); an invalid one is refused."""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from hashlib import sha256
from pathlib import Path

import httpx

from gateways import GatewayProcess
from upstream import ScriptedUpstream

ADMIN = "admin-key"


def write_config(path: Path, base_url: str, features: str) -> None:
    path.write_text(
        f"""
providers:
  up: {{kind: openai, base_url: "{base_url}", api_key: sk-up}}
models:
  small: {{provider: up, name: gpt-small, price: {{input: 1, output: 2}}}}
features:
{features}
keys:
  - {{hash: "sha256:{sha256(ADMIN.encode()).hexdigest()}", tenant: ops, tier: default, admin: true}}
"""
    )


def ask(gateway: GatewayProcess, feature: str) -> httpx.Response:
    body = {"model": feature, "messages": [{"role": "user", "content": "hi"}]}
    return httpx.post(f"{gateway.url}/v1/chat/completions", json=body, headers={"authorization": f"Bearer {ADMIN}"})


def test_reload_by_endpoint_and_sighup(tmp_path: Path, launch_gateway: Callable[..., GatewayProcess]) -> None:
    with ScriptedUpstream.in_thread() as up:
        config = tmp_path / "modelplane.yaml"
        write_config(config, up.base_url, "  one: {route: {models: [small]}}")
        gateway = launch_gateway(tmp_path, tmp_path / "home", config)
        admin = {"authorization": f"Bearer {ADMIN}"}
        before = httpx.get(f"{gateway.url}/admin/config", headers=admin).json()["version"]
        assert ask(gateway, "one").status_code == 200
        assert ask(gateway, "two").status_code == 404

        write_config(config, up.base_url, "  one: {route: {models: [small]}}\n  two: {route: {models: [small]}}")
        reloaded = httpx.post(f"{gateway.url}/admin/reload", headers=admin)
        assert reloaded.status_code == 200 and reloaded.json()["version"] != before
        assert ask(gateway, "two").status_code == 200

        # An invalid file is refused with every error named, and the old config keeps serving.
        config.write_text(config.read_text().replace("models: [small]}}\n  two", "models: [nope]}}\n  two"))
        refused = httpx.post(f"{gateway.url}/admin/reload", headers=admin)
        assert refused.status_code == 400
        assert "features.one.route.models[0]: unknown model 'nope'" in refused.json()["error"]["message"]
        assert ask(gateway, "two").status_code == 200

        write_config(config, up.base_url, "  three: {route: {models: [small]}}")
        gateway.process.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 10
        while ask(gateway, "three").status_code != 200 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert ask(gateway, "three").status_code == 200
        assert ask(gateway, "one").status_code == 404
        assert gateway.stop() == 0
