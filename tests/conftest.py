"""Fixtures shared across the test suite."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import asyncpg
import pytest
import redis
from redis.exceptions import RedisError

from gateways import GatewayProcess, free_port
from modelplane.ledger import LedgerStore
from services import REDIS_URL, unavailable
from upstream import ScriptedUpstream, ok

# The CI machine runs Postgres here with trust auth (see DESIGN.md, "Storage and scale").
POSTGRES_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/test"


@pytest.fixture
def redis_prefix() -> Iterator[str]:
    """A fresh key prefix in the Redis at 127.0.0.1:6379; its keys are deleted after the test."""
    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=3)
    try:
        client.ping()
    except (OSError, RedisError) as exc:
        client.close()
        unavailable(f"Redis unreachable at {REDIS_URL}: {exc}")
    prefix = f"mp-test-{uuid.uuid4().hex[:12]}"
    try:
        yield prefix
    finally:
        keys = list(client.scan_iter(match=f"{prefix}:*"))
        if keys:
            client.delete(*keys)
        client.close()


@pytest.fixture
async def postgres_url() -> AsyncIterator[str]:
    """The URL of a fresh, empty Postgres database, dropped after the test.

    Skips when Postgres is unreachable, except under CI=true, where that is a failure.
    """
    try:
        admin = await asyncpg.connect(POSTGRES_ADMIN_URL, timeout=3)
    except (OSError, asyncpg.PostgresError) as exc:
        unavailable(f"Postgres unreachable at {POSTGRES_ADMIN_URL}: {exc}")
    name = f"mp_test_{uuid.uuid4().hex[:12]}"
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        yield f"postgresql://postgres@127.0.0.1:5432/{name}"
    finally:
        # FORCE ends connections a failed test may have left open (Postgres 13+).
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


@pytest.fixture(scope="session")
def launch_gateway() -> Iterator[Callable[..., GatewayProcess]]:
    """Start `modelplane serve` (the installed console script) in `cwd`, with MODELPLANE_HOME=`home`."""
    started: list[GatewayProcess] = []

    def launch(cwd: Path, home: Path, config: Path | None = None, *, ready_timeout: float = 30.0) -> GatewayProcess:
        port = free_port()
        command = [str(Path(sys.executable).with_name("modelplane")), "serve", "--port", str(port)]
        if config is not None:
            command += ["--config", str(config)]
        env = {**os.environ, "MODELPLANE_HOME": str(home)}
        stderr_path = cwd / f"serve-{port}.stderr"
        with stderr_path.open("wb") as stderr:
            process = subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=stderr)
        gateway = GatewayProcess(process, port, stderr_path, home)
        started.append(gateway)
        gateway.wait_ready(ready_timeout)
        return gateway

    yield launch
    for gateway in started:
        if gateway.process.poll() is None:
            gateway.process.kill()
            gateway.process.wait(10)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def ledger_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A URL for an empty ledger database, once per backend."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/nested/ledger.db"
    url: str = request.getfixturevalue("postgres_url")
    return url


@pytest.fixture
async def store(ledger_url: str) -> AsyncIterator[LedgerStore]:
    """An opened (migrated) store, closed after the test."""
    ledger = LedgerStore.from_url(ledger_url)
    await ledger.open()
    yield ledger
    await ledger.close()


@pytest.fixture(scope="module")
def hello_upstream() -> Iterator[ScriptedUpstream]:
    """A scripted OpenAI-compatible upstream on loopback (its own thread) that answers "Hello there!"."""
    with ScriptedUpstream.in_thread() as up:
        up.default = ok("Hello there!")
        yield up
