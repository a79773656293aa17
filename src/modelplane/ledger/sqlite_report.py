"""The report's rows out of SQLite, as numpy columns, with as little per-row work as SQLite allows.

Two costs rule a million-row report on SQLite: Python's driver makes one object per value and
hands over each row in a step of its own, and SQLite aggregates into groups only by sorting
every row. So:

* Integer columns come back as one `group_concat` string each, which numpy parses in C. Names
  (feature, tier, model) come back as numbers: a CASE numbers the names the config knows, and any
  other name comes back as `x<hex>` and is numbered in Python.
* Float columns come back as plain rows, on one thread: a float survives text only at 17 digits.
* Servings of several requests are grouped in SQL, and only those. A repeated serving id always
  has a request whose id differs from it; the per-request scan lists those requests, and the
  grouped servings' requests are then masked out of the per-request columns by rowid.
* Calls are summed per (feature, tier, model) in numpy, not with GROUP BY: each call brings its
  request's rowid, which finds the request's group among the per-request columns.

* The routing report's scan runs only if the servings scan found a routed request.

Every query reads rows up to the largest rowids seen first, in one snapshot, so queries on separate
connections (each on its own thread, at once) see the same ledger: it is append-only, and a request
is written with its calls in one transaction. The rows keep the order of the row-at-a-time queries
this replaced (requests by rowid, then the grouped servings by key and serving id), and so do the
sums, so the report's numbers come out the same to the last bit.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeVar

import numpy as np
import numpy.typing as npt
import sqlalchemy as sa

T = TypeVar("T")
IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]
Job = tuple[Any, Callable[[Iterable[Any]], Any]]  # a statement, and what turns its rows into a result

TOKENS = ("input_tokens", "cached_input_tokens", "cache_write_tokens", "output_tokens", "reasoning_tokens")
CHUNK = 1 << 20  # rows per group_concat string: far below SQLite's 1 GB limit on a string
_UNKNOWN = "x"  # prefix of a name the CASE does not know, hex-encoded after it
_SEPARATOR = "\x1f"  # orders (feature, tier) keys as the report always has: feature, separator, tier


class Run(Protocol):
    """Run one SQL statement and hand its cursor (or its rows) to `convert`, on the same thread."""

    def __call__(self, sql: str, convert: Callable[[Iterable[Any]], T]) -> Awaitable[T]: ...


class Connections:
    """Read-only connections to one SQLite file, for one report. Each statement runs on a worker
    thread of its own, on a connection no other thread is using; later statements reuse the
    connections (their page cache and memory map) rather than open new ones."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._lock = threading.Lock()
        self._free: list[sqlite3.Connection] = []
        self._opened: list[sqlite3.Connection] = []

    def run(self, sql: str, convert: Callable[[Iterable[Any]], T]) -> Awaitable[T]:
        return asyncio.to_thread(self._run, sql, convert)

    def _run(self, sql: str, convert: Callable[[Iterable[Any]], T]) -> T:
        with self._lock:
            conn = self._free.pop() if self._free else None
        if conn is None:
            conn = self._connect()
        try:
            # The stdlib driver on a thread of its own: statements really run at once (sqlite3 releases
            # the GIL while it steps), which aiosqlite's hand-offs to the event loop would spoil.
            return convert(conn.execute(sql))
        finally:
            with self._lock:
                self._free.append(conn)

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(f"file:{self._path.expanduser()}?mode=ro", uri=True, check_same_thread=False)
        # Whole-table scans: a big page cache and a memory map keep them off the syscalls.
        for pragma in ("cache_size=-262144", "mmap_size=1073741824", "temp_store=MEMORY", "busy_timeout=5000"):
            conn.execute(f"PRAGMA {pragma}")
        with self._lock:
            self._opened.append(conn)
        return conn

    def close(self) -> None:
        with self._lock:
            for conn in self._opened:
                conn.close()
            self._opened, self._free = [], []


@dataclass(frozen=True, slots=True)
class Names:
    """Feature, tier and model names the ledger probably holds (the config's): they travel as numbers."""

    features: Sequence[str] = ()
    tiers: Sequence[str] = ()
    models: Sequence[str] = ()


@dataclass(frozen=True, slots=True)
class Sources:
    """What the queries read: `servings` and `calls` (tables, or repriced subqueries) with a `rowid`
    column, the servings table itself (to find a call's request), and the report's filters."""

    servings: Any
    calls: Any
    requests: Any
    filters: Sequence[sa.ColumnElement[bool]]
    day_flags: sa.ColumnElement[Any]  # of one request
    grouped_day_flags: sa.ColumnElement[Any]  # of a serving's requests together
    saved: bool  # the ledger records `saved_usd`
    routed: sa.ColumnElement[bool] | None = None  # a request the routing report counts (None: no such column)
    names: Names = field(default_factory=Names)


@dataclass(frozen=True, slots=True)
class Groups:
    """Per-serving values (rows in SERVING_COLUMNS order) and per-model call totals, by (feature, tier)."""

    servings: dict[tuple[str, str], FloatArray]  # (feature, tier) -> (columns, servings)
    calls: list[tuple[str, str, str, int, int, float, list[int]]]  # feature, tier, model, calls, unpriced, cost, tokens
    routed: int = 0  # requests `Sources.routed` holds for


@dataclass(frozen=True, slots=True)
class _Columns:
    """Integer columns of some rows; names[i] are the names column i numbers (empty: plain integers)."""

    columns: list[IntArray]
    names: list[list[str]]


async def last_rowids(run: Run, compile_sql: Callable[[Any], str]) -> tuple[int, int]:
    """The newest request's and call's rowids: what every query of one report reads up to."""
    newest = [
        sa.select(sa.func.coalesce(sa.func.max(sa.column("rowid")), 0)).select_from(sa.table(name)).scalar_subquery()
        for name in ("servings", "calls")
    ]
    ((requests, calls),) = await run(compile_sql(sa.select(*newest)), list)
    return int(requests), int(calls)


async def read(
    run: Run, src: Sources, compile_sql: Callable[[Any], str], last: tuple[int, int], parallel: bool
) -> Groups:
    """Every query of the report, and the numpy work on their results. In `parallel`, statements run
    on threads of their own as soon as what they need is known, and the numpy work overlaps them;
    otherwise (one shared connection) everything runs in turn."""
    last_request, last_call = last
    names = src.names

    async def columns(jobs: Sequence[Job]) -> _Columns:
        started = [run(compile_sql(query), convert) for query, convert in jobs]
        return _merge(await asyncio.gather(*started) if parallel else [await job for job in started])

    async def rows() -> tuple[list[FloatArray], FloatArray]:
        # One after another on one thread: rows hand the GIL back and forth at every step.
        floats = await run(compile_sql(_request_floats(src, last_request)), _floats(3 if src.saved else 2))
        (costs,) = await run(compile_sql(_call_costs(src, last_call)), _floats(1))
        return floats, costs

    running: list[Awaitable[Any]] = []

    def start(job: Awaitable[T], parallel: bool) -> Awaitable[T]:
        running.append(started := _start(job, parallel))
        return started

    try:
        requests_read = start(
            columns(
                [
                    (_request_integers(src, lo, hi), _columns(names.features, names.tiers))
                    for lo, hi in _chunks(last_request)
                ]
            ),
            parallel,
        )
        calls_read = start(
            columns([(_call_integers(src, lo, hi), _columns(names.models)) for lo, hi in _chunks(last_call)]), parallel
        )
        rows_read = start(rows(), parallel)
        requests = await requests_read
        # The last columns are lists of rowids (group_concat skips NULLs): requests whose id differs from
        # their serving id, then the routed requests.
        routed = requests.columns.pop().size if src.routed is not None else 0
        candidates = requests.columns.pop()
        repeated_read = start(run(compile_sql(_repeated(src, last_request, candidates)), list), parallel)
        calls, (floats, costs) = await calls_read, await rows_read
        if not src.saved:
            floats.append(np.full(requests.columns[0].size, np.nan))
        model_calls = await asyncio.to_thread(_model_calls, requests, calls, costs)  # while the grouping query runs
        servings = await asyncio.to_thread(_servings, requests, floats, await repeated_read)
        return Groups(servings, model_calls, routed)
    except BaseException:
        # One statement failed: let the others end before the caller closes their connections, so
        # the first error is what the user sees, not a connection closed under a running query.
        await asyncio.gather(*(job for job in running if isinstance(job, asyncio.Future)), return_exceptions=True)
        for job in running:
            if asyncio.iscoroutine(job):
                job.close()  # never started (one shared connection: everything runs in turn)
        raise


def _start(job: Awaitable[T], parallel: bool) -> Awaitable[T]:
    """`job` running now (parallel), or when awaited."""
    return asyncio.ensure_future(job) if parallel else job


def _chunks(last: int) -> list[tuple[int, int]]:
    return [(lo, min(lo + CHUNK, last)) for lo in range(0, max(last, 1), CHUNK)]


def _numbered(column: sa.ColumnElement[Any], names: Sequence[str]) -> sa.ColumnElement[Any]:
    """`column` as the position of its value in `names`, or as `x<hex>` when it is not there."""
    unknown = sa.literal(_UNKNOWN) + sa.func.hex(column)
    if not names:
        return unknown
    return sa.case(*((column == name, i) for i, name in enumerate(names)), else_=unknown)


def _concat(
    *columns: sa.ColumnElement[Any], name: str, where: Sequence[Any], source: Any, order: Any
) -> sa.Select[Any]:
    """One row: each column's values over the rows in `order`, as one comma-separated string."""
    rows = sa.select(*columns).select_from(source).where(*where).order_by(order).subquery(name)
    # The ORDER BY keeps the subquery from being flattened into the aggregate: the strings keep the order.
    return sa.select(*(sa.func.group_concat(column) for column in rows.c))


def _request_integers(src: Sources, lo: int, hi: int) -> sa.Select[Any]:
    """Requests lo < rowid <= hi: feature, tier, rowid, day and flags, tokens; then the rowids of
    those whose id is not their serving id, and of those the routing report counts (NULL elsewhere,
    which group_concat skips: a ledger without routing pays nothing for the routing report)."""
    s = src.servings
    return _concat(
        _numbered(s.c.feature, src.names.features),
        _numbered(s.c.tier, src.names.tiers),
        s.c.rowid,
        src.day_flags,
        s.c.input_tokens,
        s.c.cached_input_tokens,
        s.c.output_tokens,
        sa.case((s.c.id != s.c.serving_id, s.c.rowid)),
        *([sa.case((src.routed, s.c.rowid))] if src.routed is not None else []),
        name="requests",
        where=[*src.filters, s.c.rowid > lo, s.c.rowid <= hi],
        source=s,
        order=s.c.rowid,
    )


def _call_integers(src: Sources, lo: int, hi: int) -> sa.Select[Any]:
    """Calls lo < rowid <= hi: model, the rowid of the call's request (0: none), tokens."""
    c, r = src.calls, src.requests
    return _concat(
        _numbered(c.c.model, src.names.models),
        sa.func.coalesce(r.c.rowid, 0),
        *(c.c[name] for name in TOKENS),
        name="calls_in_order",
        where=[c.c.rowid > lo, c.c.rowid <= hi],
        source=c.outerjoin(r, r.c.id == c.c.request_id),
        order=c.c.rowid,
    )


def _request_floats(src: Sources, last: int) -> sa.Select[Any]:
    s = src.servings
    columns = [sa.func.coalesce(s.c.cost_usd, 0.0), s.c.latency_ms] + ([s.c.saved_usd] if src.saved else [])
    return sa.select(*columns).where(*src.filters, s.c.rowid <= last).order_by(s.c.rowid)


def _call_costs(src: Sources, last: int) -> sa.Select[Any]:
    c = src.calls
    return sa.select(c.c.cost_usd).where(c.c.rowid <= last).order_by(c.c.rowid)


def _repeated(src: Sources, last: int, candidates: IntArray) -> sa.Select[Any]:
    """The requests of serving ids used by a `candidates` request, grouped by (feature, tier, serving
    id), with each group's count and rowids. A serving id used by one request only comes back as one
    group with a count of 1: `_servings` leaves those in the per-request columns."""
    s, r = src.servings, src.requests
    listed: Any = sa.select(sa.column("value")).select_from(sa.func.json_each(f"[{','.join(map(str, candidates))}]"))
    shared = sa.select(r.c.serving_id).where(r.c.rowid.in_(listed))
    span = sa.func.max(s.c.ts * 1000.0 + s.c.latency_ms) - sa.func.min(s.c.ts) * 1000.0
    return (
        sa.select(
            s.c.serving_id,
            sa.func.count(),
            s.c.feature,
            s.c.tier,
            src.grouped_day_flags,
            sa.func.sum(s.c.input_tokens),
            sa.func.sum(s.c.cached_input_tokens),
            sa.func.sum(s.c.output_tokens),
            sa.func.coalesce(sa.func.sum(s.c.cost_usd), 0.0),
            span,  # first request in to last answer out
            sa.func.sum(s.c.saved_usd) if src.saved else sa.null(),
            sa.func.group_concat(s.c.rowid),
        )
        .where(*src.filters, s.c.rowid <= last, s.c.serving_id.in_(shared))
        .group_by(s.c.feature, s.c.tier, s.c.serving_id)
        .order_by(s.c.feature, s.c.tier, s.c.serving_id)
    )


def _columns(*named: Sequence[str]) -> Callable[[Iterable[Any]], _Columns]:
    """Parse the one row of group_concat strings: the first len(named) columns number names."""

    def convert(cursor: Iterable[Any]) -> _Columns:
        ((*texts,),) = list(cursor)
        parsed = [_names(text, known) for text, known in zip(texts, named, strict=False)]
        numbers = [_integers(text) for text in texts[len(named) :]]
        return _Columns([codes for codes, _ in parsed] + numbers, [names for _, names in parsed])

    return convert


def _integers(text: str | None) -> IntArray:
    return np.fromstring(text, dtype=np.int64, sep=",") if text else np.zeros(0, dtype=np.int64)


def _names(text: str | None, known: Sequence[str]) -> tuple[IntArray, list[str]]:
    """Codes and the names they stand for: numbers index `known`, `x<hex>` names come after it."""
    names = list(known)
    if not text or _UNKNOWN not in text:
        return _integers(text), names
    index: dict[str, int] = {}

    def code(value: str) -> int:
        if not value.startswith(_UNKNOWN):
            return int(value)
        if value not in index:
            index[value] = len(names)
            names.append(bytes.fromhex(value[len(_UNKNOWN) :]).decode())
        return index[value]

    values = text.split(",")
    return np.fromiter(map(code, values), dtype=np.int64, count=len(values)), names


def _merge(parts: Sequence[_Columns]) -> _Columns:
    """The chunks' columns end to end, each named column renumbered into one sorted list of names."""
    columns, names = [], []
    for i in range(len(parts[0].columns)):
        if i >= len(parts[0].names):
            columns.append(np.concatenate([part.columns[i] for part in parts]))
            continue
        merged = sorted({name for part in parts for name in part.names[i]})
        number = {name: code for code, name in enumerate(merged)}
        renumbered = [np.array([number[n] for n in part.names[i]], dtype=np.int64)[part.columns[i]] for part in parts]
        columns.append(np.concatenate(renumbered))
        names.append(merged)
    return _Columns(columns, names)


def _floats(width: int) -> Callable[[Iterable[Any]], list[FloatArray]]:
    """Rows of `width` floats (NULL: NaN) as one array per column, without a list of row tuples."""
    dtype = np.dtype([(f"f{i}", np.float64) for i in range(width)])

    def convert(cursor: Iterable[Any]) -> list[FloatArray]:
        table = np.fromiter(cursor, dtype=dtype)
        return [table[name] for name in dtype.names or ()]  # views: the per-key blocks copy them once

    return convert


def _keys(requests: _Columns) -> tuple[IntArray, Callable[[int], tuple[str, str]]]:
    """One number per request for its (feature, tier), and the names a number stands for."""
    features, tiers = requests.columns[:2]
    feature_names, tier_names = requests.names
    width = max(len(tier_names), 1)

    def names(key: int) -> tuple[str, str]:
        return feature_names[key // width], tier_names[key % width]

    return features * width + tiers, names


def _servings(requests: _Columns, floats: list[FloatArray], repeated: list[Any]) -> dict[tuple[str, str], FloatArray]:
    """Per (feature, tier), in name order: its servings of one request in rowid order, then its
    grouped servings (those of serving ids with more than one request, across every group)."""
    keys, names = _keys(requests)
    rowids, *integers = requests.columns[2:]
    requests_of = Counter[str]()
    for serving_id, count, *_ in repeated:
        requests_of[serving_id] += count
    grouped = [row for row in repeated if requests_of[row[0]] > 1]
    single = np.ones(rowids.size, dtype=np.bool_)
    single[np.searchsorted(rowids, _integers(",".join(str(row[-1]) for row in grouped)))] = False
    number = {names(key): key for key in np.flatnonzero(np.bincount(keys)).tolist()} if keys.size else {}
    parts = [
        _by_key(keys, [*integers, *floats], single),
        _by_key(
            np.array([number[(row[2], row[3])] for row in grouped], dtype=np.int64),
            [np.array([row[i] for row in grouped], dtype=np.float64) for i in range(4, 11)],
        ),
    ]
    return {
        names(key): np.concatenate([part[key] for part in parts if key in part], axis=1)
        for key in sorted(parts[0].keys() | parts[1].keys(), key=lambda key: _SEPARATOR.join(names(key)))
    }


def _by_key(
    keys: IntArray, columns: Sequence[npt.NDArray[Any]], keep: npt.NDArray[np.bool_] | None = None
) -> dict[int, FloatArray]:
    """The rows (`keep`: those only) split by key, as one (columns, rows) block per key, each in row order."""
    if keep is not None:
        keys = np.where(keep, keys, -1)
    blocks = {}
    present: Iterable[int] = np.flatnonzero(np.bincount(keys + 1)[1:]) if keys.size else ()  # -1 is left out
    for key in present:
        rows = np.flatnonzero(keys == key)  # ascending: each gather below reads its column in order
        block = np.empty((len(columns), rows.size), dtype=np.float64)
        for i, column in enumerate(columns):
            block[i] = column[rows]
        blocks[int(key)] = block
    return blocks


def _model_calls(
    requests: _Columns, calls: _Columns, costs: FloatArray
) -> list[tuple[str, str, str, int, int, float, list[int]]]:
    """Sum the calls of the reported requests per (feature, tier, model), in call order as SQL's sum() does."""
    keys, names = _keys(requests)
    rowids = requests.columns[2]
    models, request, *tokens = calls.columns
    (model_names,) = calls.names
    if not rowids.size or not request.size:
        return []
    at = np.minimum(np.searchsorted(rowids, request), rowids.size - 1)
    found = rowids[at] == request  # the call's request is in the report (rowid 0, no request: never)
    width = max(len(model_names), 1)
    group = keys[at[found]] * width + models[found]
    size = int(group.max()) + 1 if group.size else 0
    cost, unpriced = costs[found], np.isnan(costs[found])
    counts = np.bincount(group, minlength=size)
    unpriced_counts = np.bincount(group, weights=unpriced, minlength=size)
    cost_sums = np.bincount(group, weights=np.where(unpriced, 0.0, cost), minlength=size)
    token_sums = [np.bincount(group, weights=column[found], minlength=size) for column in tokens]
    totals = [
        (
            *names(g // width),
            model_names[g % width],
            int(counts[g]),
            int(unpriced_counts[g]),
            float(cost_sums[g]),
            [int(column[g]) for column in token_sums],
        )
        for g in np.flatnonzero(counts).tolist()
    ]
    return sorted(totals, key=lambda total: total[:3])
