"""No ledger record is lost when `modelplane serve` gets SIGTERM in the middle of a load."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import httpx

from modelplane.ledger.store import LedgerStore
from upstream import ScriptedUpstream

if TYPE_CHECKING:
    from gateways import GatewayProcess

REQUESTS = 2000
CONCURRENCY = 16
SIGTERM_AFTER = 500
BODY = b'{"model": "chat", "messages": [{"role": "user", "content": "Hi"}]}'


def write_config(path: Path, upstream_url: str, ledger: Path) -> Path:
    path.write_text(
        f"""\
providers:
  up: {{kind: openai, base_url: "{upstream_url}", api_key: sk-up}}
models:
  small: {{provider: up, name: gpt-up-small, price: {{input: 0.15, output: 0.6}}}}
features:
  chat: {{route: {{models: [small]}}}}
ledger: {{url: "sqlite:///{ledger}"}}
""",
        encoding="utf-8",
    )
    return path


async def load(gateway: GatewayProcess) -> tuple[set[str], int]:
    """Fire REQUESTS chat requests, CONCURRENCY at a time; SIGTERM after SIGTERM_AFTER answers.

    Returns the serving ids of every 200 and how many requests failed (refused or cut by the shutdown).
    """
    answered: set[str] = set()
    failed = 0
    remaining = iter(range(REQUESTS))
    limits = httpx.Limits(max_connections=CONCURRENCY, max_keepalive_connections=CONCURRENCY)

    async def worker(client: httpx.AsyncClient) -> None:
        nonlocal failed
        for _ in remaining:
            try:
                response = await client.post("/v1/chat/completions", content=BODY)
            except httpx.TransportError:
                failed += 1
                continue
            if response.status_code != 200:
                failed += 1
                continue
            answered.add(response.headers["x-modelplane-serving"])
            if len(answered) == SIGTERM_AFTER:
                gateway.process.send_signal(signal.SIGTERM)

    async with httpx.AsyncClient(base_url=gateway.url, limits=limits, timeout=30) as client:
        await asyncio.gather(*(worker(client) for _ in range(CONCURRENCY)))
    return answered, failed


async def ledger_serving_ids(url: str) -> tuple[set[str], int]:
    store = LedgerStore.from_url(url)
    try:
        rows = await store.servings(limit=REQUESTS * 2)
        return {row["serving_id"] for row in rows}, await store.count("servings")
    finally:
        await store.close()


async def test_no_record_is_lost_on_sigterm_under_load(
    tmp_path: Path, launch_gateway: Callable[..., GatewayProcess]
) -> None:
    ledger = tmp_path / "ledger.db"
    async with ScriptedUpstream() as upstream:
        config = write_config(tmp_path / "modelplane.yaml", upstream.base_url, ledger)
        gateway = await asyncio.to_thread(launch_gateway, tmp_path, tmp_path / "home", config)
        answered, failed = await load(gateway)
        exit_code = await asyncio.to_thread(gateway.stop, 30.0)

    assert exit_code == 0, gateway.stderr
    assert "Traceback" not in gateway.stderr
    # The SIGTERM really landed mid-load: some requests were answered, later ones were refused.
    assert len(answered) >= SIGTERM_AFTER
    assert failed > 0
    assert len(answered) + failed == REQUESTS
    recorded, rows = await ledger_serving_ids(f"sqlite:///{ledger}")
    assert rows > 0
    assert answered - recorded == set(), f"{len(answered - recorded)} answered servings missing from the ledger"
    # Every row is a request the upstream saw (no duplicates, nothing invented).
    assert rows == len(recorded) <= upstream.count()
