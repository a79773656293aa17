"""Named, ordered ledger migrations, recorded in `_migrations` so each runs once.

A migration is an async function of a connection, named `mNNN_what_it_does`. Never edit
one that has shipped: a database that already ran it will not run it again. Add the next
one to `MIGRATIONS` instead. The same functions serve SQLite and Postgres (SQLAlchemy Core).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

Migration = Callable[[AsyncConnection], Awaitable[None]]

# Any constant works; it only has to be the same in every gateway worker.
_PG_LOCK_KEY = 0x6D706C6564676572  # "mpledger"


def _migrations_table(metadata: sa.MetaData) -> sa.Table:
    return sa.Table(
        "_migrations",
        metadata,
        sa.Column("name", sa.Text, primary_key=True),
        sa.Column("applied_at", sa.Double, nullable=False),
    )


def _token_columns() -> list[sa.Column[int]]:
    names = ("input_tokens", "cached_input_tokens", "cache_write_tokens", "output_tokens", "reasoning_tokens")
    return [sa.Column(name, sa.BigInteger, nullable=False, server_default="0") for name in names]


def _outcome_columns() -> list[sa.Column[float] | sa.Column[str]]:
    """Cost, timing and config version: the tail both tables share."""
    return [
        sa.Column("cost_usd", sa.Double, nullable=True),  # NULL = price unknown, never 0
        sa.Column("latency_ms", sa.Double, nullable=False, server_default="0"),
        sa.Column("ttft_ms", sa.Double, nullable=True),
        sa.Column("config_version", sa.Text, nullable=False, server_default=""),
    ]


async def m001_servings_and_calls(conn: AsyncConnection) -> None:
    """Create `servings` and `calls` with the indexes the report queries use."""
    metadata = sa.MetaData()
    servings = sa.Table(
        "servings",
        metadata,
        sa.Column("id", sa.Text, primary_key=True),
        sa.Column("serving_id", sa.Text, nullable=False),
        sa.Column("ts", sa.Double, nullable=False),
        sa.Column("tenant", sa.Text, nullable=False),
        sa.Column("tier", sa.Text, nullable=False),
        sa.Column("feature", sa.Text, nullable=False),
        sa.Column("operation", sa.Text, nullable=False),
        sa.Column("status", sa.Text, nullable=False),
        sa.Column("http_status", sa.Integer, nullable=False),
        sa.Column("error_class", sa.Text, nullable=True),
        sa.Column("model", sa.Text, nullable=True),
        sa.Column("provider", sa.Text, nullable=True),
        sa.Column("stream", sa.Boolean, nullable=False),
        sa.Column("cache", sa.Text, nullable=False),
        sa.Column("fallback_depth", sa.Integer, nullable=False),
        *_token_columns(),
        *_outcome_columns(),
    )
    calls = sa.Table(
        "calls",
        metadata,
        sa.Column("id", sa.Text, primary_key=True),
        sa.Column("request_id", sa.Text, nullable=False),
        sa.Column("serving_id", sa.Text, nullable=False),
        sa.Column("ts", sa.Double, nullable=False),
        sa.Column("attempt", sa.Integer, nullable=False),
        sa.Column("model", sa.Text, nullable=False),
        sa.Column("provider", sa.Text, nullable=False),
        sa.Column("status", sa.Text, nullable=False),
        sa.Column("error_class", sa.Text, nullable=True),
        sa.Column("response_model", sa.Text, nullable=True),
        *_token_columns(),
        *_outcome_columns(),
    )
    sa.Index("ix_servings_ts", servings.c.ts)
    sa.Index("ix_servings_feature_ts", servings.c.feature, servings.c.ts)
    sa.Index("ix_servings_tenant_ts", servings.c.tenant, servings.c.ts)
    sa.Index("ix_servings_serving_id", servings.c.serving_id)
    sa.Index("ix_calls_request_id", calls.c.request_id)
    sa.Index("ix_calls_serving_id", calls.c.serving_id)
    sa.Index("ix_calls_model_ts", calls.c.model, calls.c.ts)
    await conn.run_sync(metadata.create_all)


async def m002_escalations(conn: AsyncConnection) -> None:
    """Create `escalations`: servings whose output failed validation, waiting for a person."""
    metadata = sa.MetaData()
    escalations = sa.Table(
        "escalations",
        metadata,
        sa.Column("id", sa.Text, primary_key=True),
        sa.Column("ts", sa.Double, nullable=False),
        sa.Column("serving_id", sa.Text, nullable=False),
        sa.Column("request_id", sa.Text, nullable=False),
        sa.Column("tenant", sa.Text, nullable=False),
        sa.Column("tier", sa.Text, nullable=False),
        sa.Column("feature", sa.Text, nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("request", sa.Text, nullable=False),  # the request body as JSON
        sa.Column("last_output", sa.Text, nullable=True),
        sa.Column("status", sa.Text, nullable=False, server_default="open"),
        sa.Column("resolved_at", sa.Double, nullable=True),
        sa.Column("resolution", sa.Text, nullable=True),
        sa.Column("config_version", sa.Text, nullable=False, server_default=""),
    )
    sa.Index("ix_escalations_status_ts", escalations.c.status, escalations.c.ts)
    await conn.run_sync(metadata.create_all)


async def m003_cache_savings(conn: AsyncConnection) -> None:
    """Add `servings.saved_usd` (what a cache hit saved: the original serving's cost) and `cache_score`."""
    await conn.execute(sa.text("ALTER TABLE servings ADD COLUMN saved_usd DOUBLE PRECISION"))
    await conn.execute(sa.text("ALTER TABLE servings ADD COLUMN cache_score DOUBLE PRECISION"))


async def m004_cache_reason(conn: AsyncConnection) -> None:
    """Add `servings.cache_reason`: why the cache answered or not (exact, semantic, below_threshold, guard:…)."""
    await conn.execute(sa.text("ALTER TABLE servings ADD COLUMN cache_reason TEXT"))


async def m005_routing_audit(conn: AsyncConnection) -> None:
    """Record each routing decision on `servings` (`route_*`), why each call was made (`calls.purpose`),
    and create `route_shadows`: cheap answers judged against the strong model's (routing/shadow.py)."""
    for name, kind in (
        ("route_strategy", "TEXT"),
        ("route_model", "TEXT"),
        ("route_candidates", "TEXT"),
        ("route_score", "DOUBLE PRECISION"),
        ("route_threshold", "DOUBLE PRECISION"),
        ("route_reason", "TEXT"),
    ):
        await conn.execute(sa.text(f"ALTER TABLE servings ADD COLUMN {name} {kind}"))
    await conn.execute(sa.text("ALTER TABLE calls ADD COLUMN purpose TEXT NOT NULL DEFAULT 'answer'"))
    metadata = sa.MetaData()
    shadows = sa.Table(
        "route_shadows",
        metadata,
        sa.Column("serving_id", sa.Text, primary_key=True),
        sa.Column("feature", sa.Text, nullable=False),
        sa.Column("ts", sa.Double, nullable=False),
        sa.Column("weak_model", sa.Text, nullable=False),
        sa.Column("strong_model", sa.Text, nullable=False),
        sa.Column("weak_cost", sa.Double, nullable=True),  # NULL = unpriced
        sa.Column("strong_cost", sa.Double, nullable=True),
        sa.Column("verdict", sa.Text, nullable=False),  # weak_worse, tie, weak_better, invalid, failed
        sa.Column("score", sa.Double, nullable=True),  # 1: the cheap answer was as good; 0: worse
        sa.Column("weak_ok", sa.Boolean, nullable=True),
        sa.Column("strong_ok", sa.Boolean, nullable=True),
        sa.Column("prompt", sa.Text, nullable=False),
        sa.Column("config_version", sa.Text, nullable=False, server_default=""),
    )
    sa.Index("ix_route_shadows_feature_ts", shadows.c.feature, shadows.c.ts)
    await conn.run_sync(metadata.create_all)


async def m006_serving_purpose(conn: AsyncConnection) -> None:
    """Add `servings.purpose`: "serve", or "eval" for servings an eval run made, which the report leaves out."""
    await conn.execute(sa.text("ALTER TABLE servings ADD COLUMN purpose TEXT NOT NULL DEFAULT 'serve'"))


async def m007_cascade_escalations(conn: AsyncConnection) -> None:
    """Add `servings.cascade_escalations`: how many cheaper models' answers failed a cascade's checks
    before the one served. `fallback_depth` counts every step down the chain, so without this a
    cascade's escalations read as fallbacks in the report."""
    await conn.execute(sa.text("ALTER TABLE servings ADD COLUMN cascade_escalations INTEGER NOT NULL DEFAULT 0"))


MIGRATIONS: tuple[Migration, ...] = (
    m001_servings_and_calls,
    m002_escalations,
    m003_cache_savings,
    m004_cache_reason,
    m005_routing_audit,
    m006_serving_purpose,
    m007_cascade_escalations,
)


async def migrate(conn: AsyncConnection) -> list[str]:
    """Apply every migration not yet recorded, in order; return the names applied now.

    Run it inside one transaction (`engine.begin()`), so a failed migration leaves
    nothing half-applied on Postgres and the `_migrations` row commits with its change.
    """
    if conn.dialect.name == "postgresql":
        # Several workers may start at once; the lock makes them migrate one at a time.
        await conn.execute(sa.select(sa.func.pg_advisory_xact_lock(_PG_LOCK_KEY)))
    table = _migrations_table(sa.MetaData())
    await conn.run_sync(table.create, checkfirst=True)
    done = set((await conn.execute(sa.select(table.c.name))).scalars())
    applied: list[str] = []
    for migration in MIGRATIONS:
        name = migration.__name__
        if name in done:
            continue
        await migration(conn)
        await conn.execute(table.insert().values(name=name, applied_at=time.time()))
        applied.append(name)
    return applied
