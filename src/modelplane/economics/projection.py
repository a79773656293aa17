"""Projection: monthly cost and margin as servings per month grow from 1k to 10M.

The model, per feature f, at N servings a month of that feature:

    cost(N)    = N · [(1 - h_f(N)) · c_miss_f + h_f(N) · c_hit_f]
    revenue(N) = N · r_f            (tier revenue per serving, weighted by the observed tier mix)
    margin(N)  = revenue(N) - cost(N) - N · v_f   (v_f: other variable cost per serving, from the tiers)

c_miss_f and c_hit_f are the observed mean costs of a priced serving that missed / hit the cache
(mean of the observed per-serving cost distribution; the model mix is inside them). h_f(N) is
the cache hit rate at that volume, measured from the ledger's own history: the hit rate of
each day against its volume (scaled to a month, x30), fitted by weighted least squares to a
saturating curve h(N) = h_max · N / (N + K) -- a fixed pool of repeated questions is hit more
often as traffic grows, but never more than h_max. With fewer than 3 days, or daily volumes
that vary less than 2x, the curve cannot be told from noise and h is the observed rate.
The whole-product curve splits N by the observed feature mix.

What-ifs change the inputs, never the model (grammar in `parse_what_if`).
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field, replace

import numpy as np

from modelplane.config.schema import Config, Price
from modelplane.economics.prices import PriceBook, call_cost
from modelplane.errors import UsageError
from modelplane.providers.base import Usage

POINTS = tuple(int(m * 10**e) for e in range(3, 8) for m in (1, 2, 5) if m * 10**e <= 10**7)
DAYS_PER_MONTH = 30
_K_GRID = np.logspace(1, 10, 181)  # servings per month
_PRICE_KEYS = ("input", "output", "cached_input", "cache_write", "reasoning")

GRAMMAR = (
    '"route P% of FEATURE to MODEL" | "price MODEL input=X output=Y [cached_input=Z cache_write=W reasoning=R]" '
    '(USD per 1M tokens) | "cache threshold T [for FEATURE]" | "cache hit-rate P% [for FEATURE]"'
)


@dataclass(frozen=True, slots=True)
class CacheCurve:
    """The cache hit rate as a function of servings per month."""

    kind: str  # "saturating", "constant" (observed rate) or "what-if"
    h_max: float
    k: float  # servings per month at which h = h_max / 2; 0 for a constant
    days: int  # days of history the fit used

    def rate(self, servings_per_month: float) -> float:
        if self.k <= 0:
            return self.h_max
        return self.h_max * servings_per_month / (servings_per_month + self.k)


def fit_cache_curve(servings_per_day: np.ndarray, hits_per_day: np.ndarray) -> CacheCurve:
    """Fit h(N) = h_max · N / (N + K) to daily hit rates, weighted by each day's servings."""
    n = servings_per_day.astype(np.float64)
    keep = n > 0
    n, hits = n[keep], hits_per_day[keep].astype(np.float64)
    total = float(n.sum())
    observed = float(hits.sum() / total) if total else 0.0
    if len(n) < 3 or n.max() < 2 * n.min() or observed == 0.0:
        return CacheCurve("constant", observed, 0.0, len(n))
    x, y = n * DAYS_PER_MONTH, hits / n
    z = x[None, :] / (x[None, :] + _K_GRID[:, None])  # one row per candidate K
    h_max = np.clip((n * y * z).sum(axis=1) / (n * z * z).sum(axis=1), 0.0, 1.0)
    sse = (n * (y[None, :] - h_max[:, None] * z) ** 2).sum(axis=1)
    best = int(np.argmin(sse))
    return CacheCurve("saturating", float(h_max[best]), float(_K_GRID[best]), len(n))


@dataclass(frozen=True, slots=True)
class FeatureBasis:
    """What the projection knows about one feature, from the ledger and the config."""

    feature: str
    servings: int
    cost_per_miss: float  # mean USD of a priced serving that missed the cache
    cost_per_hit: float  # mean USD of a priced serving answered from the cache
    misses: int  # servings that missed the cache (the ones the call tokens belong to)
    hit_rate: float
    semantic_share: float  # of the cache hits, the share that were semantic
    revenue: float | None  # per serving
    variable_cost: float  # per serving
    cache: CacheCurve
    usage: dict[str, Usage] = field(default_factory=dict)  # model -> tokens of every call
    model_cost: dict[str, float] = field(default_factory=dict)  # model -> USD of its priced calls
    threshold: float | None = None  # the semantic cache threshold in config, if any


@dataclass(frozen=True, slots=True)
class Reroute:
    share: float
    feature: str
    model: str


@dataclass(frozen=True, slots=True)
class Reprice:
    model: str
    price: dict[str, float]


@dataclass(frozen=True, slots=True)
class CacheThreshold:
    threshold: float
    feature: str | None


@dataclass(frozen=True, slots=True)
class CacheHitRate:
    rate: float
    feature: str | None


WhatIf = Reroute | Reprice | CacheThreshold | CacheHitRate

_NUMBER = r"(\d+(?:\.\d*)?|\.\d+)"
_NAME = r"([\w.:/@-]+)"
_ROUTE = re.compile(rf"route\s+{_NUMBER}\s*%\s+of\s+{_NAME}\s+to\s+{_NAME}", re.I)
_PRICE = re.compile(rf"price\s+{_NAME}((?:\s+\w+\s*=\s*{_NUMBER})+)", re.I)
_THRESHOLD = re.compile(rf"cache\s+threshold\s+{_NUMBER}(?:\s+for\s+{_NAME})?", re.I)
_HIT_RATE = re.compile(rf"cache\s+hit-?rate\s+{_NUMBER}\s*%(?:\s+for\s+{_NAME})?", re.I)


def parse_what_if(text: str) -> WhatIf:
    """One what-if phrase (see GRAMMAR); UsageError for anything else."""
    phrase = " ".join(text.split())
    if match := _ROUTE.fullmatch(phrase):
        share = float(match[1]) / 100
        if share > 1:
            raise UsageError(f"what-if {text!r}: cannot route more than 100%", f"use {GRAMMAR}")
        return Reroute(share, match[2], match[3])
    if match := _PRICE.fullmatch(phrase):
        pairs = re.findall(rf"(\w+)\s*=\s*{_NUMBER}", match[2])
        unknown = [key for key, _ in pairs if key not in _PRICE_KEYS]
        if unknown:
            raise UsageError(f"what-if {text!r}: unknown price {unknown[0]!r}", f"price keys: {', '.join(_PRICE_KEYS)}")
        return Reprice(match[1], {key: float(value) for key, value in pairs})
    if match := _THRESHOLD.fullmatch(phrase):
        threshold = float(match[1])
        if not 0 < threshold < 1:
            raise UsageError(f"what-if {text!r}: a threshold is between 0 and 1", "e.g. cache threshold 0.9")
        return CacheThreshold(threshold, match[2])
    if match := _HIT_RATE.fullmatch(phrase):
        rate = float(match[1]) / 100
        if rate > 1:
            raise UsageError(f"what-if {text!r}: a hit rate is at most 100%", "e.g. cache hit-rate 40%")
        return CacheHitRate(rate, match[2])
    raise UsageError(f"unknown what-if {text!r}", f"use {GRAMMAR}")


@dataclass(frozen=True, slots=True)
class ProjectionPoint:
    servings_per_month: int
    cache_hit_rate: float
    cost_usd: float
    cost_per_serving_usd: float
    revenue_usd: float | None
    variable_cost_usd: float
    margin_usd: float | None
    margin_pct: float | None


@dataclass(frozen=True, slots=True)
class FeatureProjection:
    feature: str
    share: float  # of all servings
    cost_per_miss_usd: float
    cost_per_hit_usd: float
    revenue_per_serving_usd: float | None
    variable_cost_per_serving_usd: float
    cache_model: CacheCurve
    points: list[ProjectionPoint]


@dataclass(frozen=True, slots=True)
class Projection:
    """Monthly curves for the product (observed feature mix) and per feature; the scenario applies the what-ifs."""

    what_ifs: list[str]
    assumptions: list[str]
    points: list[ProjectionPoint]
    features: list[FeatureProjection]
    baseline: list[ProjectionPoint] | None  # the curve without the what-ifs, when there are any


def project(bases: list[FeatureBasis], config: Config, what_ifs: list[str] | None = None) -> Projection:
    """The cost and margin curves, after applying `what_ifs` (phrases of GRAMMAR) to the observed basis."""
    phrases = list(what_ifs or [])
    scenario, notes = apply_what_ifs(bases, config, [parse_what_if(p) for p in phrases])
    total = sum(b.servings for b in scenario) or 1
    shares = {b.feature: b.servings / total for b in scenario}
    features = [
        FeatureProjection(
            b.feature,
            shares[b.feature],
            b.cost_per_miss,
            b.cost_per_hit,
            b.revenue,
            b.variable_cost,
            b.cache,
            [_point(n, [(b, 1.0)]) for n in POINTS],
        )
        for b in scenario
    ]
    mix = [(b, shares[b.feature]) for b in scenario]
    points = [_point(n, mix) for n in POINTS]
    baseline = None
    if phrases:
        base_mix = [(b, shares[b.feature]) for b in bases]
        baseline = [_point(n, base_mix) for n in POINTS]
    return Projection(phrases, _assumptions(scenario) + notes, points, features, baseline)


def _point(servings: int, mix: list[tuple[FeatureBasis, float]]) -> ProjectionPoint:
    cost = revenue = variable = hits = 0.0
    known_revenue = True
    for basis, share in mix:
        n = servings * share
        h = basis.cache.rate(n)
        hits += n * h
        cost += n * ((1 - h) * basis.cost_per_miss + h * basis.cost_per_hit)
        variable += n * basis.variable_cost
        if basis.revenue is None:
            known_revenue = False
        else:
            revenue += n * basis.revenue
    margin = revenue - cost - variable if known_revenue and mix else None
    return ProjectionPoint(
        servings,
        hits / servings,
        cost,
        cost / servings,
        revenue if known_revenue and mix else None,
        variable,
        margin,
        None if margin is None or revenue <= 0 else 100 * margin / revenue,
    )


def apply_what_ifs(
    bases: list[FeatureBasis], config: Config, what_ifs: list[WhatIf]
) -> tuple[list[FeatureBasis], list[str]]:
    """The basis as it would be under the what-ifs: prices first, then routes, then the cache."""
    book = PriceBook.from_config(config)
    now = time.time()
    prices: dict[str, Price | None] = {name: book.price_at(name, now) for name in config.models}
    known = {b.feature for b in bases}
    notes: list[str] = []
    by_feature = {b.feature: b for b in bases}
    order = sorted(what_ifs, key=lambda w: (Reprice, Reroute, CacheThreshold, CacheHitRate).index(type(w)))
    for what_if in order:
        if isinstance(what_if, Reprice):
            model = _model(what_if.model, config)
            new_price = prices[model] = _new_price(prices.get(model), what_if)
            by_feature = {f: _repriced(b, model, new_price) for f, b in by_feature.items()}
        elif isinstance(what_if, Reroute):
            _check_feature(what_if.feature, known)
            model = _model(what_if.model, config)
            price = prices.get(model)
            if price is None:
                hint = f'give it one: --what-if "price {model} input=X output=Y"'
                raise UsageError(f"model {model!r} has no price", hint)
            by_feature[what_if.feature] = _rerouted(by_feature[what_if.feature], what_if.share, price)
        else:
            targets = [what_if.feature] if what_if.feature else sorted(by_feature)
            for feature in targets:
                _check_feature(feature, known)
                by_feature[feature], note = _recached(by_feature[feature], what_if)
                notes += [note] if note else []
    return [by_feature[b.feature] for b in bases], notes


def _repriced(basis: FeatureBasis, model: str, price: Price) -> FeatureBasis:
    usage = basis.usage.get(model)
    if usage is None or basis.misses == 0:
        return basis
    new_cost = call_cost(usage, price) or 0.0
    delta = (new_cost - basis.model_cost.get(model, 0.0)) / basis.misses
    return replace(basis, cost_per_miss=basis.cost_per_miss + delta, model_cost=basis.model_cost | {model: new_cost})


def _rerouted(basis: FeatureBasis, share: float, price: Price) -> FeatureBasis:
    if basis.misses == 0:
        return basis
    usage = Usage(*(sum(getattr(u, name) for u in basis.usage.values()) for name in Usage.__dataclass_fields__))
    target = (call_cost(usage, price) or 0.0) / basis.misses
    return replace(basis, cost_per_miss=(1 - share) * basis.cost_per_miss + share * target)


def _recached(basis: FeatureBasis, what_if: CacheThreshold | CacheHitRate) -> tuple[FeatureBasis, str]:
    if isinstance(what_if, CacheHitRate):
        return replace(basis, cache=CacheCurve("what-if", what_if.rate, 0.0, basis.cache.days)), ""
    old = basis.threshold if basis.threshold is not None else 0.95
    if basis.semantic_share == 0:
        return basis, f"{basis.feature}: no semantic cache hits observed, so a threshold change is not projected"
    # Assumed: near-duplicate similarities spread evenly over [old, 1], so semantic hits scale with (1 - t).
    scale = (1 - what_if.threshold) / (1 - old)
    factor = (1 - basis.semantic_share) + basis.semantic_share * scale
    curve = basis.cache
    h_max = min(1.0, curve.h_max * factor)
    note = f"{basis.feature}: semantic threshold {old:g} → {what_if.threshold:g} scales semantic hits x{scale:.2f}"
    return replace(basis, cache=CacheCurve("what-if", h_max, curve.k, curve.days)), note


def _new_price(old: Price | None, what_if: Reprice) -> Price:
    values = old.model_dump(exclude={"effective"}) if old is not None else {}
    values |= what_if.price
    if "input" not in values or "output" not in values:
        raise UsageError(f"model {what_if.model!r} has no price to change", "give both input=X and output=Y")
    return Price(**values)


def _model(name: str, config: Config) -> str:
    if name in config.models:
        return name
    for key, model in config.models.items():
        if model.name == name:
            return key
    raise UsageError(f"unknown model {name!r} in a what-if", f"models in config: {', '.join(config.models) or 'none'}")


def _check_feature(feature: str, known: set[str]) -> None:
    if feature not in known:
        raise UsageError(f"no servings of feature {feature!r} to project", f"features: {', '.join(sorted(known))}")


def _assumptions(bases: list[FeatureBasis]) -> list[str]:
    lines = [
        "cost per serving = observed mean of priced servings, split by cache hit / miss; unpriced servings left out",
        "monthly cost = N x [(1 - h(N)) x cost per miss + h(N) x cost per hit], per feature",
        "cache hit rate h(N) = h_max x N / (N + K), fitted to daily hit rate vs daily volume x 30",
        "revenue per serving from the tier config, weighted by the observed tier mix; margin subtracts variable cost",
        "the product curve splits N by the observed feature mix",
    ]
    for b in bases:
        c = b.cache
        if c.kind == "saturating":
            fit = f"h_max {c.h_max:.1%}, K {c.k:,.0f}/month from {c.days} days"
        elif c.kind == "what-if":
            fit = f"h_max {c.h_max:.1%} (what-if)" + (f", K {c.k:,.0f}/month" if c.k else "")
        else:
            fit = f"constant {c.h_max:.1%} ({c.days} day(s) of history: too little spread to fit)"
        lines.append(f"{b.feature}: cost/miss ${b.cost_per_miss:.6f}, cost/hit ${b.cost_per_hit:.6f}, cache {fit}")
    return lines
