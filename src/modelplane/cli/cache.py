"""`modelplane cache …`: purge cached answers and see what the cache holds, straight from its backend.

The SQLite file and Redis are reached directly; a running gateway applies a purge within a
second (it follows the file's purge log, or the Redis stream). The `memory` backend lives
inside the gateway process, out of this command's reach: its admin endpoint purges it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, TypeVar

import typer
from rich.table import Table

from modelplane.cli.common import ConfigOption, console, exits_on_error, read_config
from modelplane.config.load import LoadedConfig
from modelplane.config.schema import LOCAL_TENANT
from modelplane.errors import UsageError

if TYPE_CHECKING:
    from modelplane.cache.store_redis import RedisStore

app = typer.Typer(help="Purge the response cache and show what it holds.", no_args_is_help=True)

T = TypeVar("T")
_MEMORY_HINT = "POST /admin/cache/purge?tenant=T&feature=F with an admin key, or set `cache.backend: sqlite`"


@app.command("purge")
@exits_on_error
def purge(
    feature: str | None = typer.Option(None, "--feature", help="Only this feature's entries."),
    tenant: str | None = typer.Option(None, "--tenant", help="Only this tenant's entries."),
    config: ConfigOption = None,
) -> None:
    """Drop cached answers: all of them, or a feature's and/or a tenant's."""
    loaded = read_config(config, secrets=False)
    _check_names(loaded, feature, tenant)
    backend = loaded.config.cache.backend
    if backend == "memory":
        raise UsageError(
            "the memory cache lives inside the running gateway; this command cannot reach it", _MEMORY_HINT
        )
    if backend == "sqlite":
        from modelplane.cache.store_sqlite import purge_file

        path = loaded.home / "cache.db"
        count = purge_file(path, tenant, feature) if path.exists() else 0
    else:
        count = _with_redis(loaded, lambda store: store.purge(tenant, feature))
    scope = ", ".join(f"{k} {v}" for k, v in (("feature", feature), ("tenant", tenant)) if v) or "everything"
    console.print(f"purged {count} entries from the {backend} cache ({scope})", markup=False)


@app.command("stats")
@exits_on_error
def stats(config: ConfigOption = None) -> None:
    """Entries and bytes per feature in the configured backend (Redis: exact entries)."""
    loaded = read_config(config, secrets=False)
    backend = loaded.config.cache.backend
    if backend == "memory":
        raise UsageError(
            "the memory cache lives inside the running gateway; this command cannot reach it",
            "GET /admin/cache/stats with an admin key",
        )
    if backend == "sqlite":
        from modelplane.cache.store_sqlite import usage_of_file

        path = loaded.home / "cache.db"
        usage = usage_of_file(path) if path.exists() else []
    else:
        usage = _with_redis(loaded, lambda store: store.usage())
    table = Table("feature", "entries", "exact", "semantic", "bytes", title=f"{backend} cache")
    for item in usage:
        kinds = item.by_kind
        exact, semantic = str(kinds.get("exact", 0)), str(kinds.get("semantic", 0))
        table.add_row(item.feature, str(item.entries), exact, semantic, f"{item.bytes:,}")
    console.print(table if usage else f"the {backend} cache is empty")


def _check_names(loaded: LoadedConfig, feature: str | None, tenant: str | None) -> None:
    """Typos purge nothing and say nothing: name only configured features and tenants."""
    config = loaded.config
    if feature is not None and feature not in config.features:
        known = ", ".join(sorted(config.features)) or "none are configured"
        raise UsageError(f"unknown feature {feature!r}", f"known features: {known}")
    tenants = {key.tenant for key in config.keys} or {LOCAL_TENANT}
    if tenant is not None and tenant not in tenants:
        raise UsageError(f"unknown tenant {tenant!r}", f"tenants with keys: {', '.join(sorted(tenants))}")


def _with_redis(loaded: LoadedConfig, use: Callable[[RedisStore], Awaitable[T]]) -> T:
    from modelplane.cache.store_redis import RedisStore  # loaded only when the backend is redis

    redis = loaded.config.redis
    if redis is None:
        raise UsageError("cache.backend is redis but no `redis:` section is configured", "add redis: {url: …}")

    async def run() -> T:
        store = RedisStore.from_url(redis.url, redis.prefix, max_entries=1000, timeout=5.0)
        try:
            return await use(store)
        finally:
            await store.aclose()

    return asyncio.run(run())
