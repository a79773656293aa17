"""The report's queries: per-serving aggregates and per-model call totals, computed in the database.

Nothing here runs on the serving path. Requests that share an `X-Modelplane-Serving` id are
one serving, so the servings query groups by (feature, tier, serving_id) -- but only the ids
that do repeat: most servings are one request, and sorting a million rows to find that out
would cost more than the rest of the report. The calls query groups calls by (feature, tier,
model) through their request. Both run at once on two connections (SQLite WAL readers and
Postgres backends work in parallel), and the rows come back as numpy columns.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import sqlalchemy as sa
from sqlalchemy.pool import StaticPool

from modelplane.config.schema import Price
from modelplane.ledger.store import LedgerStore

FloatArray = npt.NDArray[np.float64]

# The numeric per-serving columns, in the order `ServingColumns.values` holds them.
SERVING_COLUMNS = (
    "day_flags",  # day of the first request (unix days) x 32 + the flag bits below: one column, not six
    "input_tokens",
    "cached_input_tokens",
    "output_tokens",
    "cost_usd",  # the sum over its priced requests; see UNPRICED
    "latency_ms",  # first request in to last answer out
    "saved_usd",  # what the cache saved; NaN when the ledger does not record it
)
CACHE_HIT, SEMANTIC_HIT, FALLBACK, ESCALATED, UNPRICED = 1, 2, 4, 8, 16
_FLAG_SPAN = 32
_DAY = 86400
_KEY_SEPARATOR = "\x1f"  # between feature and tier in the group key (ASCII unit separator)
_TOKENS = ("input_tokens", "cached_input_tokens", "cache_write_tokens", "output_tokens", "reasoning_tokens")


@dataclass(frozen=True, slots=True)
class ReportFilter:
    """Which servings a report covers: a time window [since, until) and optional feature / tier lists."""

    since: float | None = None
    until: float | None = None
    features: tuple[str, ...] = ()
    tiers: tuple[str, ...] = ()


@dataclass(slots=True)
class ServingColumns:
    """Per-serving aggregates of one (feature, tier): `values[i]` is column `SERVING_COLUMNS[i]`."""

    feature: str
    tier: str
    values: FloatArray  # shape (len(SERVING_COLUMNS), servings)

    def column(self, name: str) -> FloatArray:
        column: FloatArray = self.values[SERVING_COLUMNS.index(name)]
        return column

    def flag(self, bit: int) -> npt.NDArray[np.bool_]:
        flags: npt.NDArray[np.bool_] = (self.column("day_flags").astype(np.int64) & bit) != 0
        return flags

    def days(self) -> npt.NDArray[np.int64]:
        """The day (unix days) of each serving's first request."""
        return self.column("day_flags").astype(np.int64) // _FLAG_SPAN

    @property
    def count(self) -> int:
        return int(self.values.shape[1])


@dataclass(frozen=True, slots=True)
class ModelCalls:
    """The calls one model made for one (feature, tier): counts, cost and token sums."""

    feature: str
    tier: str
    model: str
    calls: int
    unpriced_calls: int
    cost_usd: float  # of the priced calls
    input_tokens: int
    cached_input_tokens: int
    cache_write_tokens: int
    output_tokens: int
    reasoning_tokens: int


@dataclass(slots=True)
class ReportData:
    """Everything the report reads from the ledger."""

    servings: list[ServingColumns] = field(default_factory=list)
    calls: list[ModelCalls] = field(default_factory=list)
    records_savings: bool = False  # the ledger has a `saved_usd` column
    routes: list[RouteCount] = field(default_factory=list)
    shadows: list[ShadowSummary] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class RouteCount:
    """Servings of a routed feature (any strategy but `single`) answered by one model."""

    feature: str
    strategy: str
    model: str
    servings: int


@dataclass(frozen=True, slots=True)
class ShadowSummary:
    """Shadow judgements of one feature's cheaper model (routing/shadow.py)."""

    feature: str
    weak_model: str
    judged: int  # with a readable verdict
    weak_worse: int
    priced: int  # pairs with both costs known
    saving_mean: float | None  # mean of strong cost - weak cost over the priced pairs


async def report_data(
    store: LedgerStore, where: ReportFilter, reprice: Mapping[str, Price | None] | None = None
) -> ReportData:
    """Read the per-serving aggregates and the per-model call totals the report needs.

    `reprice` (model -> today's price) recomputes every call's cost from its tokens instead of
    the cost recorded at the time; a model missing from it, or priced None, counts as unpriced.
    """
    async with store.engine.connect() as conn:
        columns = await conn.run_sync(lambda sync: {c["name"] for c in sa.inspect(sync).get_columns("servings")})
    records_savings = "saved_usd" in columns
    servings: Any = sa.table("servings", *(sa.column(name) for name in columns))
    calls: Any = sa.table(
        "calls",
        sa.column("request_id"),
        sa.column("model"),
        sa.column("cost_usd"),
        *(sa.column(name) for name in _TOKENS),
    )
    if reprice is not None:
        servings, calls = _repriced(servings, calls, reprice)
    per_serving = _per_serving(servings, where, records_savings)
    per_model = _per_model(servings, calls, where)

    async def servings_columns() -> list[ServingColumns]:
        if store.engine.dialect.name == "postgresql":
            return _array_groups(await _fetch(store, _as_arrays(per_serving)))
        # Split while the calls query still runs: numpy work overlaps the other thread's scan.
        return _split_groups(await _fetch(store, per_serving))

    async def calls_and_routes() -> tuple[list[Any], tuple[list[RouteCount], list[ShadowSummary]]]:
        # The calls query ends well before the servings' split: the routing queries follow it on the same lane.
        call_rows = await _fetch(store, per_model)
        routing = await _routing(store, servings, where) if "route_strategy" in columns else ([], [])
        return call_rows, routing

    if isinstance(store.engine.pool, StaticPool):  # one shared in-memory connection: one query at a time
        groups = await servings_columns()
        call_rows, (routes, shadows) = await calls_and_routes()
    else:
        groups, (call_rows, (routes, shadows)) = await asyncio.gather(servings_columns(), calls_and_routes())
    return ReportData(groups, [_model_calls(row) for row in call_rows], records_savings, routes, shadows)


async def _routing(
    store: LedgerStore, s: sa.TableClause, where: ReportFilter
) -> tuple[list[RouteCount], list[ShadowSummary]]:
    """Which model answered each routed feature's servings; the shadow verdicts of its cheaper models."""
    routed = (
        sa.select(s.c.feature, s.c.route_strategy, sa.func.coalesce(s.c.model, ""), sa.func.count())
        .where(*_where(s, where), s.c.operation == "chat", s.c.route_strategy.not_in(("single", "shadow")))
        .group_by(s.c.feature, s.c.route_strategy, s.c.model)
        .order_by(s.c.feature, s.c.model)
    )
    r: Any = sa.table("route_shadows", *(sa.column(n) for n in _SHADOW_COLUMNS))
    judged = r.c.verdict.in_(("weak_worse", "tie", "weak_better"))
    priced = sa.and_(r.c.strong_cost.is_not(None), r.c.weak_cost.is_not(None))
    filters = [r.c.ts >= where.since] if where.since is not None else []
    filters += [r.c.ts < where.until] if where.until is not None else []
    filters += [r.c.feature.in_(where.features)] if where.features else []
    shadows = (
        sa.select(
            r.c.feature,
            r.c.weak_model,
            sa.func.sum(sa.case((judged, 1), else_=0)),
            sa.func.sum(sa.case((r.c.verdict == "weak_worse", 1), else_=0)),
            sa.func.sum(sa.case((priced, 1), else_=0)),
            sa.func.avg(sa.case((priced, r.c.strong_cost - r.c.weak_cost), else_=sa.null())),
        )
        .where(*filters)
        .group_by(r.c.feature, r.c.weak_model)
        .order_by(r.c.feature, r.c.weak_model)
    )
    counts = [RouteCount(str(a), str(b), str(c), int(n)) for a, b, c, n in await _fetch(store, routed)]
    summaries = [
        ShadowSummary(str(f), str(m), int(j or 0), int(w or 0), int(p or 0), None if mean is None else float(mean))
        for f, m, j, w, p, mean in await _fetch(store, shadows)
    ]
    return counts, summaries


_SHADOW_COLUMNS = ("feature", "ts", "weak_model", "verdict", "weak_cost", "strong_cost")


async def _fetch(store: LedgerStore, query: sa.Select[Any] | sa.CompoundSelect[Any]) -> list[Any]:
    """All rows, straight from the driver: SQLAlchemy's row objects cost seconds on a million rows."""
    async with store.engine.connect() as conn:
        sql = str(query.compile(dialect=conn.dialect, compile_kwargs={"literal_binds": True}))
        database = store.engine.url.database
        if conn.dialect.name == "sqlite" and database and database != ":memory:":
            # The stdlib driver on a thread of its own: two queries then really run at once (sqlite3
            # releases the GIL while it steps), which aiosqlite's hand-offs to the event loop spoil.
            return await asyncio.to_thread(_sqlite_rows, database, sql)
        raw: Any = (await conn.get_raw_connection()).driver_connection
        if conn.dialect.name == "sqlite":
            return list(await raw.execute_fetchall(sql))
        async with raw.transaction(readonly=True):
            # Room to hash and sort a million servings in memory rather than in temp files.
            await raw.execute("SET LOCAL work_mem = '256MB'")
            return list(await raw.fetch(sql))


def _sqlite_rows(database: str, sql: str) -> list[Any]:
    conn = sqlite3.connect(f"file:{Path(database).expanduser()}?mode=ro", uri=True)
    try:
        # One scan over the whole window: a big page cache and mmap keep it off the syscalls.
        for pragma in ("cache_size=-262144", "mmap_size=1073741824", "temp_store=MEMORY", "busy_timeout=5000"):
            conn.execute(f"PRAGMA {pragma}")
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


# Requests the gateway refused before any model or cache was asked: not servings of the feature.
REFUSED = ("unauthorized", "forbidden", "not_found", "bad_request", "payload_too_large", "rate_limited")


def _repriced(s: sa.TableClause, c: sa.TableClause, prices: Mapping[str, Price | None]) -> tuple[Any, Any]:
    """`servings` and `calls` as subqueries whose `cost_usd` is recomputed at `prices`."""
    cost = _call_cost(c, prices)
    calls = sa.select(*(col for col in c.c if col.name != "cost_usd"), cost.label("cost_usd")).subquery("calls")
    per_request = (
        sa.select(
            calls.c.request_id,
            sa.func.sum(calls.c.cost_usd).label("cost"),
            sa.func.sum(sa.case((calls.c.cost_usd.is_(None), 1), else_=0)).label("unpriced"),
        )
        .group_by(calls.c.request_id)
        .subquery("repriced")
    )
    # No calls (a cache hit): 0. Any call of a model without a price today: unpriced (NULL).
    repriced_cost = sa.case(
        (per_request.c.request_id.is_(None), 0.0), (per_request.c.unpriced > 0, sa.null()), else_=per_request.c.cost
    )
    servings = (
        sa.select(*(col for col in s.c if col.name != "cost_usd"), repriced_cost.label("cost_usd"))
        .select_from(s.outerjoin(per_request, per_request.c.request_id == s.c.id))
        .subquery("servings")
    )
    return servings, calls


def _call_cost(c: sa.TableClause, prices: Mapping[str, Price | None]) -> sa.ColumnElement[Any]:
    """A call's cost in SQL, as `economics.prices.call_cost` computes it in Python."""

    def least(a: Any, b: Any) -> Any:
        return sa.case((a < b, a), else_=b)

    whens = []
    for model, price in prices.items():
        if price is None:
            continue
        cached = least(c.c.cached_input_tokens, c.c.input_tokens)
        written = least(c.c.cache_write_tokens, c.c.input_tokens - cached)
        reasoning = least(c.c.reasoning_tokens, c.c.output_tokens) if price.reasoning is not None else sa.literal(0)
        usd = 1e-6 * (
            (c.c.input_tokens - cached - written) * price.input
            + cached * (price.input if price.cached_input is None else price.cached_input)
            + written * (price.input if price.cache_write is None else price.cache_write)
            + (c.c.output_tokens - reasoning) * price.output
            + reasoning * (price.output if price.reasoning is None else price.reasoning)
        )
        whens.append((c.c.model == model, usd))
    if not whens:
        return sa.null()
    return sa.case(*whens, else_=sa.null())


def _where(s: sa.TableClause, where: ReportFilter) -> list[sa.ColumnElement[bool]]:
    clauses: list[sa.ColumnElement[bool]] = [sa.or_(s.c.error_class.is_(None), s.c.error_class.not_in(REFUSED))]
    if where.since is not None:
        clauses.append(s.c.ts >= where.since)
    if where.until is not None:
        clauses.append(s.c.ts < where.until)
    if where.features:
        clauses.append(s.c.feature.in_(where.features))
    if where.tiers:
        clauses.append(s.c.tier.in_(where.tiers))
    if "purpose" in s.c:  # an eval run's servings are not the product's economics (no column before m006)
        clauses.append(s.c.purpose != "eval")
    return clauses


def _bits(s: sa.TableClause, combine: Any) -> sa.ColumnElement[Any]:
    """The flag bits of a row (`combine` = identity) or of a group (`combine` = max)."""
    tests = (
        (s.c.cache != "miss", CACHE_HIT),
        (s.c.cache == "semantic", SEMANTIC_HIT),
        (s.c.fallback_depth > 0, FALLBACK),
        (s.c.status == "escalated", ESCALATED),
        (s.c.cost_usd.is_(None), UNPRICED),
    )
    terms = [combine(sa.case((test, bit), else_=0)) for test, bit in tests]
    total: sa.ColumnElement[Any] = terms[0]
    for term in terms[1:]:
        total = total + term
    return total


def _per_serving(s: sa.TableClause, where: ReportFilter, records_savings: bool) -> sa.CompoundSelect[Any]:
    filters = _where(s, where)
    repeated = sa.select(s.c.serving_id).where(*filters).group_by(s.c.serving_id).having(sa.func.count() > 1)
    multi = repeated.cte("multi")
    null = sa.literal(None, sa.Float)
    key = s.c.feature + sa.literal(_KEY_SEPARATOR) + s.c.tier
    single = sa.select(
        key,
        _day(s.c.ts) + _bits(s, lambda term: term),
        s.c.input_tokens,
        s.c.cached_input_tokens,
        s.c.output_tokens,
        sa.func.coalesce(s.c.cost_usd, 0.0),
        s.c.latency_ms,
        s.c.saved_usd if records_savings else null,
    ).where(*filters, s.c.serving_id.not_in(sa.select(multi.c.serving_id)))
    # Several requests: the span from the first arrival to the last answer.
    span = sa.func.max(s.c.ts * 1000.0 + s.c.latency_ms) - sa.func.min(s.c.ts) * 1000.0
    grouped = (
        sa.select(
            key,
            _day(sa.func.min(s.c.ts)) + _bits(s, sa.func.max),
            sa.func.sum(s.c.input_tokens),
            sa.func.sum(s.c.cached_input_tokens),
            sa.func.sum(s.c.output_tokens),
            sa.func.coalesce(sa.func.sum(s.c.cost_usd), 0.0),
            span,
            sa.func.sum(s.c.saved_usd) if records_savings else null,
        )
        .where(*filters, s.c.serving_id.in_(sa.select(multi.c.serving_id)))
        .group_by(s.c.feature, s.c.tier, s.c.serving_id)
    )
    return sa.union_all(single, grouped)


def _day(ts: sa.ColumnElement[Any]) -> sa.ColumnElement[Any]:
    # Whole seconds, then integer division: the same day on SQLite (CAST truncates) and Postgres (rounds).
    return sa.cast(ts, sa.BigInteger) // _DAY * _FLAG_SPAN


def _split_groups(rows: list[Any]) -> list[ServingColumns]:
    """Cut the rows into one numeric block per (feature, tier), in name order."""
    if not rows:
        return []
    table = np.array(rows, dtype=object)
    values = table[:, 1:].astype(np.float64).T  # None (no saving recorded) becomes NaN
    index: dict[str, int] = {}
    codes = np.fromiter(map(index.setdefault, table[:, 0], range(len(rows))), dtype=np.int64, count=len(rows))
    groups = []
    for key, code in sorted(index.items()):
        feature, tier = key.split(_KEY_SEPARATOR, 1)
        groups.append(ServingColumns(feature, tier, np.ascontiguousarray(values[:, codes == code])))
    return groups


def _as_arrays(per_serving: sa.CompoundSelect[Any]) -> sa.Select[Any]:
    """Postgres: one row per (feature, tier) holding each column as an array. asyncpg decodes a
    float8[] in C, where a million row records would cost seconds of Python."""
    rows = per_serving.subquery("per_serving")
    key, *values = rows.c
    return sa.select(key, *(sa.func.array_agg(sa.cast(v, sa.Double)) for v in values)).group_by(key)


def _array_groups(rows: list[Any]) -> list[ServingColumns]:
    groups = []
    for key, *columns in sorted(rows, key=lambda row: str(row[0])):
        feature, tier = str(key).split(_KEY_SEPARATOR, 1)
        groups.append(ServingColumns(feature, tier, np.array(columns, dtype=np.float64)))
    return groups


def _per_model(s: sa.TableClause, c: sa.TableClause, where: ReportFilter) -> sa.Select[Any]:
    return (
        sa.select(
            s.c.feature,
            s.c.tier,
            c.c.model,
            sa.func.count(),
            sa.func.count() - sa.func.count(c.c.cost_usd),
            sa.func.coalesce(sa.func.sum(c.c.cost_usd), 0.0),
            *(sa.func.coalesce(sa.func.sum(c.c[name]), 0) for name in _TOKENS),
        )
        .select_from(c.join(s, c.c.request_id == s.c.id))
        .where(*_where(s, where))
        .group_by(s.c.feature, s.c.tier, c.c.model)
        .order_by(s.c.feature, s.c.tier, c.c.model)
    )


def _model_calls(row: Any) -> ModelCalls:
    return ModelCalls(
        str(row[0]),
        str(row[1]),
        str(row[2]),
        int(row[3]),
        int(row[4]),
        float(row[5]),
        *(int(value) for value in row[6:]),
    )
