"""The unit-economics report: per feature and per tier, what a serving consumes, costs and earns.

`build_report` reads the ledger (`ledger.queries`, aggregated in the database) and returns a
`Report`; renderers take the report object: `report_json` here, the table in `cli/report.py`,
and any other format (html) is one more function of a `Report`. Statistics are over servings
(requests sharing a serving id are one serving). Costs exclude servings with an unpriced call;
those are counted and flagged instead, never priced at 0.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import time
from collections import defaultdict
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

import numpy as np
import orjson

from modelplane.config.schema import Config, TierConfig
from modelplane.economics.prices import PriceBook
from modelplane.economics.projection import FeatureBasis, Projection, fit_cache_curve, project
from modelplane.ledger.queries import (
    CACHE_HIT,
    ESCALATED,
    FAILED,
    FALLBACK,
    SEMANTIC_HIT,
    SERVING_COLUMNS,
    UNPRICED,
    FloatArray,
    ModelCalls,
    Names,
    ReportData,
    ReportFilter,
    ServingColumns,
    report_data,
)
from modelplane.ledger.store import LedgerStore
from modelplane.providers.base import Usage

SCHEMA_VERSION = 1
_EPOCH = dt.date(1970, 1, 1)


@dataclass(frozen=True, slots=True)
class Spread:
    """Mean, median and 95th percentile (linear interpolation); None when there is nothing to measure."""

    mean: float | None
    p50: float | None
    p95: float | None


@dataclass(frozen=True, slots=True)
class Tokens:
    input: Spread
    cached_input: Spread
    output: Spread


@dataclass(frozen=True, slots=True)
class Economics:
    """One row of the report: a feature, a tier, a feature within a tier, or everything."""

    feature: str | None  # None: every feature
    tier: str | None  # None: every tier
    servings: int
    tokens_per_serving: Tokens
    cost_per_serving_usd: Spread  # priced servings only
    priced_servings: int
    unpriced_servings: int
    calls: int
    unpriced_calls: int
    revenue_per_serving_usd: float | None  # None: a tier in this row has no revenue in config
    variable_cost_per_serving_usd: float
    margin_per_serving_usd: float | None
    margin_pct: float | None
    cache_hit_rate: float
    saved_usd: float | None  # None: the ledger does not record savings
    fallback_rate: float
    escalation_rate: float
    error_rate: float  # servings whose client got an error (every model failed, a stream cut)
    model_mix: dict[str, float]  # share of calls by model
    latency_ms: Spread
    tiers: list[Economics] = field(default_factory=list)  # per tier, in a feature row


@dataclass(frozen=True, slots=True)
class DailyCost:
    """One day of one feature: priced servings that day and their mean cost."""

    day: str  # YYYY-MM-DD, UTC
    servings: int
    cost_per_serving_usd: float


@dataclass(frozen=True, slots=True)
class Report:
    schema_version: int
    generated_at: str
    since: str | None
    until: str | None
    features_filter: list[str]
    tiers_filter: list[str]
    config_version: str
    total: Economics
    features: list[Economics]
    tiers: list[Economics]
    projection: Projection | None
    cost_over_time: dict[str, list[DailyCost]] = field(default_factory=dict)  # feature -> days, oldest first
    routing: list[Routing] = field(default_factory=list)  # features with a routing strategy


@dataclass(frozen=True, slots=True)
class Routing:
    """One routed feature: where its servings went, and what shadow judging measured (routing/shadow.py)."""

    feature: str
    strategy: str
    servings: int
    share: dict[str, float]  # model that answered -> share of the feature's routed servings
    judged: int  # shadow pairs with a readable verdict
    regret: float | None  # share of judged pairs where the cheap answer was worse; None: none judged
    saved_usd: float | None  # est. strong cost - cheap cost over the servings the cheaper models answered
    saved_per_serving_usd: float | None


async def build_report(
    store: LedgerStore,
    config: Config,
    where: ReportFilter,
    *,
    config_version: str = "",
    what_ifs: list[str] | None = None,
    reprice: bool = False,
) -> Report:
    """Read the ledger and compute the report, with its projection (after `what_ifs`).

    `reprice`: every call's cost recomputed from its tokens at today's prices (the config's,
    else the shipped table's) instead of the price in effect when it was made.
    """
    prices = None
    if reprice:
        book, now = PriceBook.from_config(config), time.time()
        prices = {model: book.price_at(model, now) for model in config.models}
    names = Names(list(config.features), list(config.tiers), list(config.models))
    data = await report_data(store, where, prices, names)
    return report_from_data(data, config, where, config_version=config_version, what_ifs=what_ifs)


def report_from_data(
    data: ReportData,
    config: Config,
    where: ReportFilter,
    *,
    config_version: str = "",
    what_ifs: list[str] | None = None,
) -> Report:
    calculator = _Calculator(data, config)
    features = sorted({g.feature for g in data.servings})
    tiers = sorted({g.tier for g in data.servings})
    feature_rows = [
        dataclasses.replace(
            calculator.row(feature=f),
            tiers=[calculator.row(feature=f, tier=t) for t in tiers if calculator.has(f, t)],
        )
        for f in features
    ]
    bases = [calculator.basis(f) for f in features]
    projection = project(bases, config, what_ifs) if bases or what_ifs else None
    return Report(
        SCHEMA_VERSION,
        dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        _iso(where.since),
        _iso(where.until),
        list(where.features),
        list(where.tiers),
        config_version,
        calculator.row(),
        feature_rows,
        [calculator.row(tier=t) for t in tiers],
        projection,
        cost_over_time(data),
        routing_rows(data),
    )


def routing_rows(data: ReportData) -> list[Routing]:
    """Per routed feature: model shares, and regret and savings estimated from its shadow pairs."""
    rows = []
    for feature in sorted({r.feature for r in data.routes} | {s.feature for s in data.shadows}):
        counts = [r for r in data.routes if r.feature == feature]
        shadows = [s for s in data.shadows if s.feature == feature]
        total = sum(r.servings for r in counts)
        by_model: dict[str, int] = defaultdict(int)
        for r in counts:
            by_model[r.model] += r.servings
        judged = sum(s.judged for s in shadows)
        priced = [s for s in shadows if s.saving_mean is not None and s.priced]
        saved = sum(by_model.get(s.weak_model, 0) * (s.saving_mean or 0.0) for s in priced) if priced else None
        weak_servings = sum(by_model.get(s.weak_model, 0) for s in priced)
        rows.append(
            Routing(
                feature=feature,
                strategy=",".join(sorted({r.strategy for r in counts})) or "-",
                servings=total,
                share={m: n / total for m, n in sorted(by_model.items(), key=lambda i: -i[1])} if total else {},
                judged=judged,
                regret=sum(s.weak_worse for s in shadows) / judged if judged else None,
                saved_usd=saved,
                saved_per_serving_usd=None if saved is None or not weak_servings else saved / weak_servings,
            )
        )
    return rows


def cost_over_time(data: ReportData) -> dict[str, list[DailyCost]]:
    """Mean cost per priced serving, per feature and UTC day (every tier together)."""
    totals: dict[str, dict[int, list[float]]] = defaultdict(lambda: defaultdict(lambda: [0.0, 0.0]))
    for group in data.servings:
        priced = ~group.flag(UNPRICED)
        days, costs = group.days()[priced], group.column("cost_usd")[priced]
        for day in np.unique(days):
            on_day = days == day
            total = totals[group.feature][int(day)]
            total[0] += float(costs[on_day].sum())
            total[1] += float(on_day.sum())
    return {
        feature: [
            DailyCost((_EPOCH + dt.timedelta(days=day)).isoformat(), int(n), cost / n)
            for day, (cost, n) in sorted(days.items())
        ]
        for feature, days in sorted(totals.items())
    }


def report_dict(report: Report) -> dict[str, Any]:
    """The report as plain JSON data, in the shape `report.schema.json` documents."""
    return dataclasses.asdict(report)


def report_json(report: Report) -> bytes:
    return orjson.dumps(report_dict(report), option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY)


def report_schema() -> dict[str, Any]:
    """The JSON Schema of `--format json`."""
    text = resources.files("modelplane.economics").joinpath("report.schema.json").read_bytes()
    schema: dict[str, Any] = orjson.loads(text)
    return schema


def tier_revenue(tier: TierConfig | None) -> float | None:
    """Revenue per serving of a tier (per serving, or monthly price ÷ expected servings); None if unknown."""
    return None if tier is None else tier.revenue()


def tier_variable_cost(tier: TierConfig | None) -> float:
    """Other variable cost per serving (hosting, retrieval, support…) besides model calls."""
    return 0.0 if tier is None else tier.variable_cost_per_serving


class _Calculator:
    """Statistics over any selection of (feature, tier) groups."""

    def __init__(self, data: ReportData, config: Config) -> None:
        self.data = data
        self.config = config
        self.groups = {(g.feature, g.tier): g for g in data.servings}
        self.calls: dict[tuple[str, str], list[ModelCalls]] = defaultdict(list)
        for c in data.calls:
            self.calls[(c.feature, c.tier)].append(c)

    def has(self, feature: str, tier: str) -> bool:
        return (feature, tier) in self.groups

    def _select(self, feature: str | None, tier: str | None) -> list[tuple[str, str]]:
        return [k for k in self.groups if feature in (None, k[0]) and tier in (None, k[1])]

    def row(self, feature: str | None = None, tier: str | None = None) -> Economics:
        keys = self._select(feature, tier)
        blocks = [self.groups[k] for k in keys]
        values = np.concatenate([b.values for b in blocks], axis=1) if blocks else np.zeros((len(SERVING_COLUMNS), 0))
        merged = ServingColumns(feature or "", tier or "", values)
        n = merged.count
        calls = [c for k in keys for c in self.calls.get(k, [])]
        unpriced = merged.flag(UNPRICED)
        cost = merged.column("cost_usd")[~unpriced]
        revenue, variable = self._revenue(blocks)
        mean_cost = float(cost.mean()) if cost.size else None
        margin = None if revenue is None or mean_cost is None else revenue - mean_cost - variable
        total_calls = sum(c.calls for c in calls)
        mix: dict[str, float] = defaultdict(float)
        for c in calls:
            mix[c.model] += c.calls / total_calls
        saved = merged.column("saved_usd")
        return Economics(
            feature=feature,
            tier=tier,
            servings=n,
            tokens_per_serving=Tokens(
                _spread(merged.column("input_tokens")),
                _spread(merged.column("cached_input_tokens")),
                _spread(merged.column("output_tokens")),
            ),
            cost_per_serving_usd=_spread(cost),
            priced_servings=int(cost.size),
            unpriced_servings=int(unpriced.sum()),
            calls=total_calls,
            unpriced_calls=sum(c.unpriced_calls for c in calls),
            revenue_per_serving_usd=revenue,
            variable_cost_per_serving_usd=variable,
            margin_per_serving_usd=margin,
            margin_pct=None if margin is None or not revenue else 100 * margin / revenue,
            cache_hit_rate=_rate(merged.flag(CACHE_HIT)),
            saved_usd=float(np.nansum(saved)) if self.data.records_savings else None,
            fallback_rate=_rate(merged.flag(FALLBACK)),
            escalation_rate=_rate(merged.flag(ESCALATED)),
            error_rate=_rate(merged.flag(FAILED)),
            model_mix=dict(sorted(mix.items(), key=lambda item: -item[1])),
            latency_ms=_spread(merged.column("latency_ms")),
        )

    def _revenue(self, blocks: list[ServingColumns]) -> tuple[float | None, float]:
        """Per-serving revenue and variable cost, weighted by each tier's servings."""
        n = sum(b.count for b in blocks)
        if n == 0:
            return None, 0.0
        revenue: float | None = 0.0
        variable = 0.0
        for b in blocks:
            tier = self.config.tiers.get(b.tier)
            per_serving = tier_revenue(tier)
            variable += tier_variable_cost(tier) * b.count / n
            if per_serving is None or revenue is None:
                revenue = None
            else:
                revenue += per_serving * b.count / n
        return revenue, variable

    def basis(self, feature: str) -> FeatureBasis:
        """What the projection needs to know about a feature."""
        keys = self._select(feature, None)
        blocks = [self.groups[k] for k in keys]
        merged = ServingColumns(feature, "", np.concatenate([b.values for b in blocks], axis=1))
        hit, priced = merged.flag(CACHE_HIT), ~merged.flag(UNPRICED)
        cost = merged.column("cost_usd")
        days = merged.days()
        days -= days.min()
        revenue, variable = self._revenue(blocks)
        usage: dict[str, list[int]] = defaultdict(lambda: [0] * 5)
        model_cost: dict[str, float] = defaultdict(float)
        for c in (c for k in keys for c in self.calls.get(k, [])):
            tokens = (c.input_tokens, c.cached_input_tokens, c.cache_write_tokens, c.output_tokens, c.reasoning_tokens)
            usage[c.model] = [a + b for a, b in zip(usage[c.model], tokens, strict=True)]
            model_cost[c.model] += c.cost_usd
        hits = int(hit.sum())
        configured = self.config.features.get(feature)
        semantic = configured.cache.semantic if configured and configured.cache else None
        return FeatureBasis(
            feature=feature,
            servings=merged.count,
            cost_per_miss=_mean(cost[priced & ~hit]),
            cost_per_hit=_mean(cost[priced & hit]),
            misses=merged.count - hits,
            hit_rate=hits / merged.count,
            semantic_share=float(merged.flag(SEMANTIC_HIT).sum() / hits) if hits else 0.0,
            revenue=revenue,
            variable_cost=variable,
            cache=fit_cache_curve(np.bincount(days), np.bincount(days, weights=hit.astype(np.float64))),
            usage={m: Usage(*t) for m, t in usage.items()},
            model_cost=dict(model_cost),
            threshold=None if semantic is None else _threshold(semantic.threshold, self.config.cache.embedder),
        )


def _threshold(configured: float | None, embedder: str) -> float:
    from modelplane.cache.semantic import default_threshold

    return configured if configured is not None else default_threshold(embedder)


def _spread(values: FloatArray) -> Spread:
    if values.size == 0:
        return Spread(None, None, None)
    p50, p95 = np.percentile(values, [50, 95])
    return Spread(float(values.mean()), float(p50), float(p95))


def _mean(values: FloatArray) -> float:
    return float(values.mean()) if values.size else 0.0


def _rate(flags: np.ndarray) -> float:
    return float(flags.mean()) if flags.size else 0.0


def _iso(ts: float | None) -> str | None:
    return None if ts is None else dt.datetime.fromtimestamp(ts, dt.UTC).isoformat(timespec="seconds")
