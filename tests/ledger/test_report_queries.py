"""The report's queries against a plain Python reading of the same ledger, on SQLite and Postgres.

The ledger mixes what the fast paths treat apart: servings of several requests (the first request's
id is the serving id, the others' are not), a client's serving id used by one request only or by
two, a serving id shared across features, refused and eval requests sharing serving ids with real
ones, names the config does not know (one with a comma, one that starts with the SQLite path's
`x` marker), unpriced calls, a call whose request is not in the ledger, and cache savings.
"""

from __future__ import annotations

import math
import random
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import sqlalchemy as sa

from modelplane.ledger import CallRecord, LedgerStore, ServingRecord, queries, sqlite_report
from modelplane.ledger.queries import REFUSED, Names, ReportData, ReportFilter, ServingColumns, report_data

T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z
FEATURES = ("support-reply", "summarize", "odd,feature")
TIERS = ("pro", "free", "x-tier")
MODELS = ("small", "large", "weird model")
# What the config "knows": the rest come back as names, not numbers, on SQLite.
KNOWN = Names(features=("support-reply", "gone-feature"), tiers=("pro", "x-tier"), models=("small",))


def ledger(seed: int = 3) -> list[ServingRecord]:
    rng = random.Random(seed)
    records: list[ServingRecord] = []

    def add(serving_id: str, rid: str, **fields: Any) -> None:
        ts = T0 + len(records) * 1234.567 + rng.random()
        calls = [
            CallRecord(
                id=f"{rid}-c{n}",
                request_id=rid,
                serving_id=serving_id,
                ts=ts,
                attempt=n,
                model=rng.choice(MODELS),
                provider="up",
                status="ok",
                input_tokens=rng.randrange(1, 3000),
                cached_input_tokens=rng.randrange(0, 50),
                cache_write_tokens=rng.choice((0, 0, 7)),
                output_tokens=rng.randrange(1, 900),
                reasoning_tokens=rng.choice((0, 0, 11)),
                cost_usd=None if rng.random() < 0.1 else rng.random() / 100,
                latency_ms=rng.uniform(1, 2000),
            )
            for n in range(rng.choice((0, 1, 1, 2, 3)))
        ]
        costs = [c.cost_usd for c in calls]
        hit = not calls and rng.random() < 0.7
        values: dict[str, Any] = {
            "feature": rng.choice(FEATURES),
            "tier": rng.choice(TIERS),
            "status": "escalated" if rng.random() < 0.1 else "ok",
            "cache": rng.choice(("exact", "semantic")) if hit else "miss",
            "fallback_depth": max(len(calls) - 1, 0),
            "cascade_escalations": rng.randrange(0, max(len(calls), 1)),  # steps a cascade's check refused
            "input_tokens": sum(c.input_tokens for c in calls),
            "cached_input_tokens": sum(c.cached_input_tokens for c in calls),
            "output_tokens": sum(c.output_tokens for c in calls),
            "cost_usd": None if None in costs else sum(c for c in costs if c is not None),
            "saved_usd": rng.random() / 50 if hit else None,
            "error_class": "server_error" if rng.random() < 0.08 else None,  # the client got a 502
        } | fields
        records.append(
            ServingRecord(
                id=rid,
                serving_id=serving_id,
                ts=ts,
                tenant="t",
                operation="chat",
                http_status=200,
                latency_ms=rng.uniform(5, 5000),
                calls=calls,
                **values,
            )
        )

    for n in range(150):
        kind = rng.random()
        if kind < 0.6:  # one request, no header
            add(f"r{n}", f"r{n}")
        elif kind < 0.75:  # a serving of two or three requests
            for part in range(rng.choice((2, 3))):
                add(f"r{n}", f"r{n}" if part == 0 else f"r{n}-{part}")
        elif kind < 0.82:  # the client named the serving: one request
            add(f"client-{n}", f"r{n}")
        elif kind < 0.87:  # the client named the serving: two requests
            add(f"client-{n}", f"r{n}-a")
            add(f"client-{n}", f"r{n}-b")
        elif kind < 0.9:  # one serving id, two features
            add(f"r{n}", f"r{n}", feature="support-reply")
            add(f"r{n}", f"r{n}-b", feature="summarize")
        elif kind < 0.95:  # a refused request beside a served one: the served one is a serving alone
            add(f"r{n}", f"r{n}")
            add(f"r{n}", f"r{n}-refused", error_class=rng.choice(REFUSED), status="error")
        else:  # an eval run's request beside a served one
            add(f"r{n}", f"r{n}")
            add(f"r{n}", f"r{n}-eval", purpose="eval")
    stray = CallRecord(
        id="stray", request_id="no-such-request", serving_id="nowhere", ts=T0, attempt=0, model="small", provider="up",
        status="ok", input_tokens=5, cost_usd=0.5,
    )  # fmt: skip
    records[0].calls.append(stray)
    return records


def expected(records: list[ServingRecord]) -> tuple[dict[tuple[str, str], list[tuple[float, ...]]], list[Any]]:
    """The per-serving rows (SERVING_COLUMNS) per (feature, tier), single requests in ledger order then
    grouped servings by serving id; and the per-model totals, sorted."""
    kept = [r for r in records if r.error_class not in REFUSED and r.purpose != "eval"]
    per_serving: dict[str, int] = defaultdict(int)
    for r in kept:
        per_serving[r.serving_id] += 1
    rows: dict[tuple[str, str], list[tuple[float, ...]]] = defaultdict(list)
    groups: dict[tuple[str, str, str], list[ServingRecord]] = defaultdict(list)
    for r in kept:
        if per_serving[r.serving_id] == 1:
            rows[(r.feature, r.tier)].append(_row([r], r.latency_ms))
        else:
            groups[(r.feature, r.tier, r.serving_id)].append(r)
    for (feature, tier, _), parts in sorted(groups.items()):
        span = max(r.ts * 1000.0 + r.latency_ms for r in parts) - min(r.ts for r in parts) * 1000.0
        rows[(feature, tier)].append(_row(parts, span))
    totals: dict[tuple[str, str, str], list[Any]] = defaultdict(lambda: [0, 0, 0.0, 0, 0, 0, 0, 0])
    requests = {r.id: r for r in kept}
    for r in records:
        for c in r.calls:
            if c.request_id not in requests:
                continue
            owner = requests[c.request_id]
            total = totals[(owner.feature, owner.tier, c.model)]
            total[0] += 1
            total[1] += c.cost_usd is None
            total[2] += c.cost_usd or 0.0
            for i, value in enumerate(
                (c.input_tokens, c.cached_input_tokens, c.cache_write_tokens, c.output_tokens, c.reasoning_tokens)
            ):
                total[3 + i] += value
    return dict(rows), sorted((*key, *total) for key, total in totals.items())


def _row(parts: list[ServingRecord], latency: float) -> tuple[float, ...]:
    flags = (
        any(r.cache != "miss" for r in parts)
        + 2 * any(r.cache == "semantic" for r in parts)
        + 4 * any(r.fallback_depth > r.cascade_escalations for r in parts)
        + 8 * any(r.status == "escalated" for r in parts)
        + 16 * any(r.cost_usd is None for r in parts)
        + 32 * any(r.error_class is not None for r in parts)
    )
    saved = [r.saved_usd for r in parts if r.saved_usd is not None]
    return (
        int(min(r.ts for r in parts)) // 86400 * 64 + flags,
        sum(r.input_tokens for r in parts),
        sum(r.cached_input_tokens for r in parts),
        sum(r.output_tokens for r in parts),
        sum(r.cost_usd for r in parts if r.cost_usd is not None),
        latency,
        sum(saved) if saved else math.nan,
    )


def _columns(groups: list[ServingColumns]) -> dict[tuple[str, str], list[tuple[float, ...]]]:
    return {(g.feature, g.tier): [tuple(map(float, row)) for row in g.values.T] for g in groups}


def _calls(data: ReportData) -> list[Any]:
    return [
        (c.feature, c.tier, c.model, c.calls, c.unpriced_calls, c.cost_usd, c.input_tokens, c.cached_input_tokens,
         c.cache_write_tokens, c.output_tokens, c.reasoning_tokens)
        for c in data.calls
    ]  # fmt: skip


def assert_matches(data: ReportData, records: list[ServingRecord], *, ordered: bool) -> None:
    rows, calls = expected(records)
    found = _columns(data.servings)
    assert list(found) == sorted(rows, key="\x1f".join)  # the groups, in the report's order
    for key, want in rows.items():
        got = found[key] if ordered else sorted(found[key])
        np.testing.assert_allclose(np.array(got), np.array(want if ordered else sorted(want)), rtol=1e-12)
    got_calls = _calls(data)
    assert [c[:5] + c[6:] for c in got_calls] == [c[:5] + c[6:] for c in calls]
    assert [c[5] for c in got_calls] == pytest.approx([c[5] for c in calls], rel=1e-12)


async def test_report_data_matches_a_reading_of_the_ledger(store: LedgerStore) -> None:
    records = ledger()
    await store.write(records)

    data = await report_data(store, ReportFilter(), names=KNOWN)

    # SQLite keeps the order the report always had (requests by rowid, then grouped servings): its means
    # come out the same to the last bit. Postgres's order is its own.
    assert_matches(data, records, ordered=store.engine.dialect.name == "sqlite")


async def test_report_data_without_names_and_in_small_chunks(
    store: LedgerStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every name read back as text, and SQLite's strings cut into chunks of 7 rows: the same data."""
    monkeypatch.setattr(sqlite_report, "CHUNK", 7)
    records = ledger(seed=5)
    await store.write(records)

    data = await report_data(store, ReportFilter())

    assert_matches(data, records, ordered=store.engine.dialect.name == "sqlite")


async def test_a_window_and_a_feature(store: LedgerStore) -> None:
    records = ledger(seed=11)
    await store.write(records)
    since, until = T0 + 40_000, T0 + 300_000
    where = ReportFilter(since=since, until=until, features=("support-reply", "odd,feature"), tiers=("free", "pro"))

    data = await report_data(store, where, names=KNOWN)

    inside = [r for r in records if since <= r.ts < until and r.feature in where.features and r.tier in where.tiers]
    assert_matches(data, inside, ordered=store.engine.dialect.name == "sqlite")


async def test_in_memory_sqlite_reads_the_same(tmp_path: Path) -> None:
    """The shared in-memory connection runs the queries one at a time: the same data as a file."""
    records = ledger(seed=7)
    found = []
    for url in ("sqlite:///:memory:", f"sqlite:///{tmp_path}/ledger.db"):
        store = LedgerStore.from_url(url)
        await store.open()
        try:
            await store.write(records)
            found.append(await report_data(store, ReportFilter(), names=KNOWN))
        finally:
            await store.close()
    memory, file = found
    assert_matches(memory, records, ordered=True)
    assert _columns(memory.servings).keys() == _columns(file.servings).keys()
    for a, b in zip(memory.servings, file.servings, strict=True):
        np.testing.assert_array_equal(a.values, b.values)
    assert memory.calls == file.calls


async def test_sqlite_reads_the_ledger_as_it_was_when_the_report_began(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Requests and calls written while the report's queries run are left out of every one of them."""
    store = LedgerStore.from_url(f"sqlite:///{tmp_path}/ledger.db")
    await store.open()
    try:
        first, later = ledger(seed=1), _renamed(ledger(seed=2))
        await store.write(first)
        real = sqlite_report.last_rowids

        async def then_more_arrive(*args: Any) -> tuple[int, int]:
            last = await real(*args)
            await store.write(later)
            return last

        monkeypatch.setattr(sqlite_report, "last_rowids", then_more_arrive)
        data = await report_data(store, ReportFilter(), names=KNOWN)
    finally:
        await store.close()

    assert_matches(data, first, ordered=True)


async def test_postgres_reads_one_snapshot_on_every_backend(postgres_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Servings written while the report's statements start are left out of every one of them."""
    store = LedgerStore.from_url(postgres_url)
    await store.open()
    try:
        first, later = ledger(seed=1), _renamed(ledger(seed=2))
        await store.write(first)
        real = queries._postgres_lane
        written: list[bool] = []

        async def after_the_snapshot(*args: Any) -> Any:
            if not written:
                written.append(True)
                await store.write(later)
            return await real(*args)

        monkeypatch.setattr(queries, "_postgres_lane", after_the_snapshot)
        data = await report_data(store, ReportFilter(), names=KNOWN)
    finally:
        await store.close()

    assert written
    assert_matches(data, first, ordered=False)


def _renamed(records: list[ServingRecord]) -> list[ServingRecord]:
    """The same records under new ids, so that they fit in the same ledger as the originals."""
    for r in records:
        r.id, r.serving_id = f"later-{r.id}", f"later-{r.serving_id}"
        for c in r.calls:
            c.id, c.request_id = f"later-{c.id}", f"later-{c.request_id}"
    return records


async def test_a_serving_just_before_midnight_utc_counts_on_its_own_day(store: LedgerStore) -> None:
    # Postgres rounds a CAST to BIGINT: without FLOOR the last half second of a day moved to the next.
    def serving(rid: str, ts: float) -> ServingRecord:
        return ServingRecord(rid, rid, ts, "t", "pro", "support-reply", "chat", "ok", 200, latency_ms=10.0)

    await store.write([serving("late", T0 - 0.3), serving("early", T0 + 0.3), serving("noon", T0 + 43_200.7)])

    data = await report_data(store, ReportFilter(), names=KNOWN)

    [group] = data.servings
    midnight = int(T0) // 86_400
    assert sorted(group.days().tolist()) == [midnight - 1, midnight, midnight]


async def test_a_failing_statement_is_the_error_the_report_raises(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = LedgerStore.from_url(f"sqlite:///{tmp_path}/ledger.db")
    await store.open()
    try:
        await store.write(ledger(seed=2))

        def broken(*_: Any) -> Any:
            return sa.text("SELECT no_such_column FROM servings")

        monkeypatch.setattr(sqlite_report, "_call_costs", broken)
        with pytest.raises(Exception, match="no_such_column"):
            await report_data(store, ReportFilter(), names=KNOWN)
        monkeypatch.undo()
        assert (await report_data(store, ReportFilter(), names=KNOWN)).servings  # the store still works
    finally:
        await store.close()
