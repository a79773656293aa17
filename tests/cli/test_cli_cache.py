"""`modelplane cache purge|stats` on the configured backend: the SQLite file, Redis, or a plain refusal."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from modelplane.cache.store import StoredEntry
from modelplane.cache.store_redis import RedisStore
from modelplane.cache.store_sqlite import SqliteStore
from modelplane.cli.main import app
from services import REDIS_URL

SEP = "\x1f"
CONFIG = """
providers: {up: {kind: openai, base_url: "http://127.0.0.1:1/v1"}}
models: {small: {provider: up}}
features:
  faq: {route: {models: [small]}, cache: {exact: true}}
  billing: {route: {models: [small]}, cache: {exact: true}}
"""


def entry(tenant: str, feature: str, digest: str = "d") -> StoredEntry:
    return StoredEntry("exact", SEP.join((tenant, feature, digest)), b"{}", 0.0, "small", time.time() + 60)


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, list(args), env={"COLUMNS": "200"})
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("MODELPLANE_HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    return tmp_path / "home"


def config(tmp_path: Path, extra: str = "") -> str:
    path = tmp_path / "modelplane.yaml"
    path.write_text(CONFIG + extra)
    return str(path)


async def fill(store: SqliteStore | RedisStore, entries: list[StoredEntry]) -> None:
    await store.start(lambda change: None)
    for item in entries:
        store.put(item)
    await store.aclose()


def test_purge_and_stats_on_the_sqlite_file(tmp_path: Path, home: Path) -> None:
    entries = [entry("local", "faq", "1"), entry("local", "faq", "2"), entry("local", "billing")]
    asyncio.run(fill(SqliteStore(home / "cache.db", 10**6), entries))
    code, out, _ = run("cache", "stats", "--config", config(tmp_path))
    assert code == 0 and "faq" in out and "billing" in out
    code, out, _ = run("cache", "purge", "--feature", "faq", "--config", config(tmp_path))
    assert code == 0 and "purged 2 entries from the sqlite cache (feature faq)" in out
    code, out, _ = run("cache", "purge", "--config", config(tmp_path))
    assert code == 0 and "purged 1 entries" in out


def test_purge_on_redis(tmp_path: Path, home: Path, redis_prefix: str) -> None:
    entries = [entry("local", "faq"), entry("local", "billing")]
    asyncio.run(fill(RedisStore.from_url(REDIS_URL, redis_prefix, 1000), entries))
    path = config(tmp_path, f'redis: {{url: "{REDIS_URL}", prefix: "{redis_prefix}"}}\ncache: {{backend: redis}}\n')
    code, out, _ = run("cache", "stats", "--config", path)
    assert code == 0 and "billing" in out
    code, out, _ = run("cache", "purge", "--feature", "billing", "--tenant", "local", "--config", path)
    assert code == 0 and "purged 1 entries from the redis cache (feature billing, tenant local)" in out


@pytest.mark.parametrize(
    ("args", "reason"),
    [
        (["--feature", "nope"], "unknown feature 'nope'"),
        (["--tenant", "acme"], "unknown tenant 'acme'"),
    ],
)
def test_bad_input_exits_2_with_a_reason(tmp_path: Path, home: Path, args: list[str], reason: str) -> None:
    code, _, err = run("cache", "purge", *args, "--config", config(tmp_path))
    assert code == 2 and reason in err and "Traceback" not in err


def test_the_memory_backend_is_out_of_reach_and_says_so(tmp_path: Path, home: Path) -> None:
    code, _, err = run("cache", "purge", "--config", config(tmp_path, "cache: {backend: memory}\n"))
    assert code == 2 and "cannot reach it" in err and "/admin/cache/purge" in err
