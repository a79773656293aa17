"""`GET /admin/escalations` and `POST /admin/escalations/{id}/resolve` on a running gateway."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from hashlib import sha256
from pathlib import Path

import httpx

from escalations import escalation, seed
from gateways import GatewayProcess
from upstream import ScriptedUpstream

ADMIN = "admin-key"
USER = "user-key"


def test_list_and_resolve_escalations(tmp_path: Path, launch_gateway: Callable[..., GatewayProcess]) -> None:
    ledger = tmp_path / "ledger.db"
    asyncio.run(seed(f"sqlite:///{ledger}", [escalation(n) for n in (1, 2, 3)]))
    with ScriptedUpstream.in_thread() as up:
        config = tmp_path / "modelplane.yaml"
        config.write_text(
            f"""
providers: {{up: {{kind: openai, base_url: "{up.base_url}", api_key: sk-up}}}}
models: {{small: {{provider: up}}}}
features: {{tickets: {{route: {{models: [small]}}}}}}
ledger: {{url: "sqlite:///{ledger}"}}
keys:
  - {{hash: "sha256:{sha256(ADMIN.encode()).hexdigest()}", tenant: ops, admin: true}}
  - {{hash: "sha256:{sha256(USER.encode()).hexdigest()}", tenant: acme}}
"""
        )
        gateway = launch_gateway(tmp_path, tmp_path / "home", config)
        admin = {"authorization": f"Bearer {ADMIN}"}
        url = f"{gateway.url}/admin/escalations"

        listed = httpx.get(url, headers=admin)
        assert listed.status_code == 200
        assert listed.json()["object"] == "list"
        assert [row["id"] for row in listed.json()["data"]] == ["esc-3", "esc-2", "esc-1"]
        assert listed.json()["data"][0]["request"]["messages"][0]["content"] == "ticket 3 ✓"
        assert [row["id"] for row in httpx.get(url, params={"limit": 1}, headers=admin).json()["data"]] == ["esc-3"]

        resolved = httpx.post(f"{url}/esc-2/resolve", json={"resolution": "answered by hand"}, headers=admin)
        assert resolved.status_code == 200
        assert resolved.json()["id"] == "esc-2" and resolved.json()["status"] == "resolved"
        assert resolved.json()["resolution"] == "answered by hand" and resolved.json()["resolved_at"] > 0

        def ids(status: str) -> list[str]:
            return [row["id"] for row in httpx.get(url, params={"status": status}, headers=admin).json()["data"]]

        assert ids("open") == ["esc-3", "esc-1"]
        assert ids("resolved") == ["esc-2"]
        assert ids("all") == ["esc-3", "esc-2", "esc-1"]

        again = httpx.post(f"{url}/esc-2/resolve", json={"resolution": "twice"}, headers=admin)
        unknown = httpx.post(f"{url}/esc-404/resolve", json={"resolution": "x"}, headers=admin)
        for refused in (again, unknown):
            assert refused.status_code == 404
            assert refused.json()["error"]["type"] == "invalid_request_error"
            assert refused.json()["error"]["code"] == "escalation_not_found"

        empty = httpx.post(f"{url}/esc-1/resolve", json={"resolution": " "}, headers=admin)
        assert empty.status_code == 400 and empty.json()["error"]["param"] == "resolution"
        not_json = httpx.post(f"{url}/esc-1/resolve", content=b"done", headers=admin)
        assert not_json.status_code == 400
        assert httpx.get(url, params={"status": "closed"}, headers=admin).status_code == 400
        assert httpx.get(url, params={"limit": "lots"}, headers=admin).status_code == 400

        # Only admin keys may see or resolve the queue: a user key is forbidden, no key unauthenticated.
        user = {"authorization": f"Bearer {USER}"}
        assert httpx.get(url, headers=user).status_code == 403
        assert httpx.post(f"{url}/esc-1/resolve", json={"resolution": "x"}, headers=user).status_code == 403
        assert httpx.get(url).status_code == 401
        assert ids("open") == ["esc-3", "esc-1"]
        assert gateway.stop() == 0
