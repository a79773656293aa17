"""The report's queries: per-serving aggregates and per-model call totals, as numpy columns.

Nothing here runs on the serving path. Requests that share an `X-Modelplane-Serving` id are
one serving, so servings are grouped by (feature, tier, serving_id) -- but only the ids that do
repeat, found from the requests whose id differs from their serving id: most servings are one
request, and grouping a million serving ids would cost more than the rest of the report. Calls
are summed by (feature, tier, model) through their request.

Postgres does it all in SQL, on several backends at once, and hands each (feature, tier) back
as binary float8 arrays. SQLite cannot aggregate without sorting, nor hand a million rows to
Python cheaply, so ledger/sqlite_report.py reads it column by column and sums in numpy. Both
give the same `ReportData`.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import numpy.typing as npt
import sqlalchemy as sa
from sqlalchemy.ext.compiler import compiles

from modelplane.config.schema import Price
from modelplane.ledger import sqlite_report
from modelplane.ledger.sqlite_report import Names as Names  # report_data takes them: re-exported
from modelplane.ledger.store import LedgerStore

FloatArray = npt.NDArray[np.float64]
T = TypeVar("T")

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
CACHE_HIT, SEMANTIC_HIT, FALLBACK, ESCALATED, UNPRICED, FAILED = 1, 2, 4, 8, 16, 32
_FLAG_SPAN = 64
_DAY = 86400
_KEY_SEPARATOR = "\x1f"  # between feature and tier in the group key (ASCII unit separator)
_TOKENS = sqlite_report.TOKENS


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
    store: LedgerStore,
    where: ReportFilter,
    reprice: Mapping[str, Price | None] | None = None,
    names: Names | None = None,
) -> ReportData:
    """Read the per-serving aggregates and the per-model call totals the report needs.

    `reprice` (model -> today's price) recomputes every call's cost from its tokens instead of
    the cost recorded at the time; a model missing from it, or priced None, counts as unpriced.
    `names`: the features, tiers and models the ledger most likely holds (the config's), which
    SQLite can then hand over as numbers; any others are read all the same, more slowly.
    """
    async with store.engine.connect() as conn:
        columns = await conn.run_sync(lambda sync: {c["name"] for c in sa.inspect(sync).get_columns("servings")})
    records_savings = "saved_usd" in columns
    sqlite = store.engine.dialect.name == "sqlite"
    # SQLite's own row number: see ledger/sqlite_report.py
    servings: Any = sa.table("servings", *([sa.column("rowid")] if sqlite else []), *map(sa.column, columns))
    calls: Any = sa.table(
        "calls",
        *([sa.column("rowid")] if sqlite else []),
        sa.column("request_id"),
        sa.column("model"),
        sa.column("cost_usd"),
        *(sa.column(name) for name in _TOKENS),
    )
    requests = servings
    if reprice is not None:
        servings, calls = _repriced(servings, calls, reprice)
    if sqlite:
        sources = _sqlite_sources(servings, calls, requests, where, records_savings, names or Names())
        return await _sqlite_data(store, sources, where)

    single, grouped = _per_serving(servings, where, records_savings)

    async def rows(query: sa.Select[Any], fetch: Fetch) -> list[Any]:
        return await fetch(query)

    async def routing(fetch: Fetch) -> tuple[list[RouteCount], list[ShadowSummary]]:
        return await _routing(fetch, servings, where) if "route_strategy" in columns else ([], [])

    single_rows, grouped_rows, call_rows, (routes, shadows) = await _postgres_lanes(
        store,
        partial(rows, _as_arrays(single)),
        partial(rows, _as_arrays(grouped)),
        partial(rows, _per_model(servings, calls, where)),
        routing,
    )
    model_calls = sorted((_model_calls(row) for row in call_rows), key=lambda m: (m.feature, m.tier, m.model))
    return ReportData(_array_groups(single_rows, grouped_rows), model_calls, records_savings, routes, shadows)


Fetch = Callable[[sa.Select[Any]], Awaitable[list[Any]]]


async def _postgres_lanes(store: LedgerStore, *lanes: Callable[[Fetch], Awaitable[Any]]) -> list[Any]:
    """Run each lane on a backend of its own, all at once (the server spreads them over its cores),
    all in one snapshot of the ledger (exported by a leading transaction), as if in one statement."""
    async with store.engine.connect() as conn:
        lead: Any = (await conn.get_raw_connection()).driver_connection
        async with lead.transaction(isolation="repeatable_read", readonly=True):
            snapshot = await lead.fetchval("SELECT pg_export_snapshot()")
            return list(await asyncio.gather(*(_postgres_lane(store, snapshot, lane) for lane in lanes)))


async def _postgres_lane(store: LedgerStore, snapshot: str, lane: Callable[[Fetch], Awaitable[Any]]) -> Any:
    async with store.engine.connect() as conn:
        raw: Any = (await conn.get_raw_connection()).driver_connection
        async with raw.transaction(isolation="repeatable_read", readonly=True):
            await raw.execute(f"SET TRANSACTION SNAPSHOT '{snapshot}'")
            # Room to hash a million servings in memory rather than in temp files. Every aggregate here
            # has few groups, but a ledger never analyzed leaves the planner guessing thousands, and it
            # would sort a million rows rather than hash them. And no JIT, whose compiling (0.1-0.2 s a
            # statement) these one-pass scans never earn back.
            await raw.execute("SET LOCAL work_mem = '256MB'; SET LOCAL enable_sort = off; SET LOCAL jit = off")

            async def fetch(query: sa.Select[Any]) -> list[Any]:
                # Straight from asyncpg: SQLAlchemy's row objects would cost seconds on a million rows.
                return list(await raw.fetch(_sql(store)(query)))

            return await lane(fetch)


async def _sqlite_data(store: LedgerStore, sources: sqlite_report.Sources, where: ReportFilter) -> ReportData:
    """SQLite: every statement on connections of its own, at once; in memory, on the shared one in turn."""
    database = store.engine.url.database
    connections = sqlite_report.Connections(Path(database)) if database and database != ":memory:" else None
    run = connections.run if connections else _shared_run(store)
    compile_sql = _sql(store)

    async def fetch(query: sa.Select[Any]) -> list[Any]:
        return await run(compile_sql(query), list)

    try:
        last = await sqlite_report.last_rowids(run, compile_sql)
        found = await sqlite_report.read(run, sources, compile_sql, last, parallel=connections is not None)
        routes: list[RouteCount] = []
        shadows: list[ShadowSummary] = []
        if sources.routed is not None:
            # The servings scan counted the routed requests: most ledgers have none, and skip a scan.
            bounds = [sources.servings.c.rowid <= last[0]]
            routes, shadows = await _routing(fetch, sources.servings, where, bounds, counts=found.routed > 0)
    finally:
        if connections:
            connections.close()
    groups = [ServingColumns(feature, tier, values) for (feature, tier), values in found.servings.items()]
    model_calls = [
        ModelCalls(feature, tier, model, n, unpriced, cost, *tokens)
        for feature, tier, model, n, unpriced, cost, tokens in found.calls
    ]
    return ReportData(groups, model_calls, sources.saved, routes, shadows)


def _shared_run(store: LedgerStore) -> sqlite_report.Run:
    """In memory: every statement on the one shared connection, one after another."""

    async def run(sql: str, convert: Callable[[Iterable[Any]], T]) -> T:
        async with store.engine.connect() as conn:
            raw: Any = (await conn.get_raw_connection()).driver_connection
            return convert(await raw.execute_fetchall(sql))

    return run


def _sqlite_sources(
    s: sa.TableClause,
    c: sa.TableClause,
    requests: sa.TableClause,
    where: ReportFilter,
    records_savings: bool,
    names: Names,
) -> sqlite_report.Sources:
    return sqlite_report.Sources(
        servings=s,
        calls=c,
        requests=requests,
        filters=_where(s, where),
        day_flags=_day(s.c.ts) + _bits(s, lambda term: term),
        grouped_day_flags=_day(sa.func.min(s.c.ts)) + _bits(s, sa.func.max),
        saved=records_savings,
        routed=_routed(s) if "route_strategy" in s.c else None,
        names=names,
    )


def _sql(store: LedgerStore) -> Callable[[Any], str]:
    dialect = store.engine.dialect

    def compile_sql(query: Any) -> str:
        return str(query.compile(dialect=dialect, compile_kwargs={"literal_binds": True}))

    return compile_sql


async def _routing(
    fetch: Fetch,
    s: sa.TableClause,
    where: ReportFilter,
    bounds: Sequence[sa.ColumnElement[bool]] = (),
    counts: bool = True,
) -> tuple[list[RouteCount], list[ShadowSummary]]:
    """Which model answered each routed feature's servings (`counts`: there are some); the shadow
    verdicts of its cheaper models."""
    routed = (
        sa.select(s.c.feature, s.c.route_strategy, sa.func.coalesce(s.c.model, ""), sa.func.count())
        .where(*_where(s, where), *bounds, _routed(s))
        .group_by(s.c.feature, s.c.route_strategy, s.c.model)
        .order_by(s.c.feature, s.c.model)
    )
    r: Any = sa.table("route_shadows", *(sa.column(n) for n in _SHADOW_COLUMNS))
    judged = r.c.verdict.in_(("weak_worse", "tie", "weak_better"))
    priced = sa.and_(r.c.strong_cost.is_not(None), r.c.weak_cost.is_not(None))
    filters = [r.c.ts >= where.since] if where.since is not None else []
    filters += [r.c.ts < where.until] if where.until is not None else []
    filters += [r.c.feature.in_(where.features)] if where.features else []
    if where.tiers:  # a shadow judgement has no tier of its own: its serving's
        filters.append(r.c.serving_id.in_(sa.select(s.c.serving_id).where(s.c.tier.in_(where.tiers))))
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
    route_counts = [RouteCount(str(a), str(b), str(c), int(n)) for a, b, c, n in await fetch(routed)] if counts else []
    summaries = [
        ShadowSummary(str(f), str(m), int(j or 0), int(w or 0), int(p or 0), None if mean is None else float(mean))
        for f, m, j, w, p, mean in await fetch(shadows)
    ]
    return route_counts, summaries


def _routed(s: sa.TableClause) -> sa.ColumnElement[bool]:
    """A request the routing report counts: a chat request of a feature with a routing strategy."""
    return sa.and_(s.c.operation == "chat", s.c.route_strategy.not_in(("single", "shadow")))


_SHADOW_COLUMNS = ("serving_id", "feature", "ts", "weak_model", "verdict", "weak_cost", "strong_cost")


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
        # A step down the chain is a fallback when a model failed, not when a cascade's check
        # refused a cheaper answer and escalated (m007 records how many steps were those).
        (s.c.fallback_depth > (s.c.cascade_escalations if "cascade_escalations" in s.c else 0), FALLBACK),
        (s.c.status == "escalated", ESCALATED),
        (s.c.cost_usd.is_(None), UNPRICED),
        # An upstream failure the client got as an error (5xx, a cut stream); refused requests are not servings.
        (s.c.error_class.is_not(None), FAILED),
    )
    terms = [combine(sa.case((test, bit), else_=0)) for test, bit in tests]
    total: sa.ColumnElement[Any] = terms[0]
    for term in terms[1:]:
        total = total + term
    return total


def _per_serving(
    s: sa.TableClause, where: ReportFilter, records_savings: bool
) -> tuple[sa.Select[Any], sa.Select[Any]]:
    """Postgres: one row per serving, from the servings of one request and from the grouped ones. A
    serving id that several requests share is used by a request whose id differs from it; the servings
    of those few candidate ids are grouped, and every other request is a serving of its own -- which
    spares grouping a million serving ids."""
    filters = _where(s, where)
    candidates = sa.select(s.c.serving_id).where(*filters, s.c.id != s.c.serving_id).subquery("candidates")
    null = sa.literal(None, sa.Float)
    key = _key(s)
    single = sa.select(
        key,
        _day(s.c.ts) + _bits(s, lambda term: term),
        s.c.input_tokens,
        s.c.cached_input_tokens,
        s.c.output_tokens,
        sa.func.coalesce(s.c.cost_usd, 0.0),
        s.c.latency_ms,
        s.c.saved_usd if records_savings else null,
    ).where(*filters, s.c.serving_id.not_in(sa.select(candidates.c.serving_id)))
    # Several requests: the span from the first arrival to the last answer. A candidate id used by one
    # request only (the client named its serving) is that request, latency as recorded.
    span = sa.func.max(s.c.ts * 1000.0 + s.c.latency_ms) - sa.func.min(s.c.ts) * 1000.0
    requests = sa.func.sum(sa.func.count()).over(partition_by=s.c.serving_id)  # across (feature, tier)
    grouped = (
        sa.select(
            key,
            _day(sa.func.min(s.c.ts)) + _bits(s, sa.func.max),
            sa.func.sum(s.c.input_tokens),
            sa.func.sum(s.c.cached_input_tokens),
            sa.func.sum(s.c.output_tokens),
            sa.func.coalesce(sa.func.sum(s.c.cost_usd), 0.0),
            sa.case((requests == 1, sa.func.max(s.c.latency_ms)), else_=span),
            sa.func.sum(s.c.saved_usd) if records_savings else null,
        )
        .where(*filters, s.c.serving_id.in_(sa.select(candidates.c.serving_id)))
        .group_by(s.c.feature, s.c.tier, s.c.serving_id)
    )
    return single, grouped


def _key(s: sa.TableClause) -> sa.ColumnElement[Any]:
    return s.c.feature + sa.literal(_KEY_SEPARATOR) + s.c.tier


def _day(ts: sa.ColumnElement[Any]) -> sa.ColumnElement[Any]:
    # Whole seconds, then integer division: the UTC day, the same on both backends.
    return _WholeSeconds(ts) // _DAY * _FLAG_SPAN


class _WholeSeconds(sa.sql.expression.FunctionElement[int]):
    """A unix time rounded down to the second, as BIGINT. CAST truncates on SQLite (the same as
    rounding down for any time after 1970) but rounds on Postgres, which would move a serving in
    the last half second before midnight UTC to the next day: Postgres takes FLOOR first."""

    type = sa.BigInteger()
    inherit_cache = True


@compiles(_WholeSeconds)
def _whole_seconds(element: _WholeSeconds, compiler: Any, **kw: Any) -> str:
    return f"CAST({compiler.process(element.clauses, **kw)} AS BIGINT)"


@compiles(_WholeSeconds, "postgresql")
def _whole_seconds_postgres(element: _WholeSeconds, compiler: Any, **kw: Any) -> str:
    return f"CAST(FLOOR({compiler.process(element.clauses, **kw)}) AS BIGINT)"


def _as_arrays(per_serving: sa.Select[Any]) -> sa.Select[Any]:
    """Postgres: one row per (feature, tier) holding each column as a float8[] in binary (array_send),
    which numpy reads as it is: a million row records would cost seconds of Python."""
    rows = per_serving.subquery("per_serving")
    key, *values = rows.c
    nan: Any = sa.literal_column("'NaN'::float8")  # no NULLs: every element then has the same size
    arrays = (sa.func.array_send(sa.func.array_agg(sa.func.coalesce(sa.cast(v, sa.Double), nan))) for v in values)
    return sa.select(key, *arrays).group_by(key)


def _array_groups(single: list[Any], grouped: list[Any]) -> list[ServingColumns]:
    """Per (feature, tier), in name order: the servings of one request, then the grouped ones."""
    parts: dict[str, list[FloatArray]] = defaultdict(list)
    for key, *columns in (*single, *grouped):
        parts[str(key)].append(np.array([_float8s(column) for column in columns], dtype=np.float64))
    groups = []
    for key, blocks in sorted(parts.items()):
        feature, tier = key.split(_KEY_SEPARATOR, 1)
        groups.append(ServingColumns(feature, tier, np.concatenate(blocks, axis=1)))
    return groups


_FLOAT8 = np.dtype([("size", ">i4"), ("value", ">f8")])


def _float8s(data: bytes) -> FloatArray:
    """A float8[] in Postgres's binary format: dimensions, a has-NULLs flag, the element type, each
    dimension's length and lower bound, then every element as its size and big-endian value."""
    dimensions, has_nulls = int.from_bytes(data[:4], "big"), int.from_bytes(data[4:8], "big")
    if dimensions == 0:
        return np.zeros(0, dtype=np.float64)
    assert dimensions == 1 and not has_nulls, "a report column is a one-dimensional array without NULLs"
    count = int.from_bytes(data[12:16], "big")
    values: FloatArray = np.frombuffer(data, dtype=_FLOAT8, count=count, offset=20)["value"].astype(np.float64)
    return values


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
    )  # no ORDER BY: Postgres would rather sort a million joined rows than hash them into a few groups


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
