"""Pictures of the unit economics: one self-contained HTML page (plotly.js inlined, works offline).

The same page is the `--format html` report and the gateway's `/dashboard`.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache

import plotly.graph_objects as go
import plotly.io as pio
from plotly.offline import get_plotlyjs

from modelplane.economics.report import Report


@dataclass(frozen=True, slots=True)
class Charts:
    """What the page draws; every series is plain numbers so any report can fill it."""

    title: str
    cost_over_time: Mapping[str, Sequence[tuple[str, float]]]  # feature -> (day, mean USD per serving)
    margin_by_tier: Mapping[str, float | None]  # "feature / tier" -> gross margin per serving, USD
    model_mix: Mapping[str, float]  # model -> share of calls
    projection: Mapping[str, Sequence[tuple[int, float, float | None]]]  # feature -> (servings/month, cost, margin)
    notes: Sequence[str] = field(default_factory=tuple)  # the projection's assumptions


def figures(charts: Charts) -> list[tuple[str, go.Figure]]:
    """The four charts, each with its id."""
    cost = go.Figure(
        [
            go.Scatter(x=[d for d, _ in s], y=[c for _, c in s], mode="lines+markers", name=f)
            for f, s in charts.cost_over_time.items()
        ]
    )
    cost.update_layout(title="Cost per serving over time", yaxis_title="USD per serving")
    # Days, never hours or milliseconds: plotly zooms a single day's point down to ms ticks.
    days = len({d for s in charts.cost_over_time.values() for d, _ in s})
    cost.update_xaxes(type="date", tickformat="%Y-%m-%d", title="day (UTC)", dtick=86_400_000 if days <= 14 else None)
    tiers = list(charts.margin_by_tier)
    margin = go.Figure([go.Bar(x=tiers, y=[charts.margin_by_tier[t] or 0.0 for t in tiers])])
    margin.update_layout(title="Gross margin per serving by tier", yaxis_title="USD per serving")
    mix = go.Figure([go.Pie(labels=list(charts.model_mix), values=list(charts.model_mix.values()), hole=0.4)])
    mix.update_layout(title="Model mix (share of calls)")
    projection = go.Figure()
    for feature, points in charts.projection.items():
        volumes = [n for n, _, _ in points]
        projection.add_trace(go.Scatter(x=volumes, y=[c for _, c, _ in points], name=f"{feature}: cost"))
        if any(m is not None for _, _, m in points):
            projection.add_trace(
                go.Scatter(x=volumes, y=[m for _, _, m in points], name=f"{feature}: margin", line={"dash": "dot"})
            )
    projection.update_layout(
        title="Projected monthly cost and margin",
        xaxis_type="log",
        xaxis_title="servings per month",
        yaxis_title="USD per month",
    )
    return [("cost-over-time", cost), ("margin-by-tier", margin), ("model-mix", mix), ("projection", projection)]


@lru_cache(maxsize=1)
def _plotly_js() -> str:
    return str(get_plotlyjs())


def render_page(charts: Charts) -> str:
    """One HTML document with plotly.js inlined: it draws with no network at all."""
    divs = "\n".join(
        f'<section class="chart" id="{name}">'
        + pio.to_html(figure, include_plotlyjs=False, full_html=False, div_id=f"{name}-plot")
        + "</section>"
        for name, figure in figures(charts)
    )
    notes = "".join(f"<li>{html.escape(note)}</li>" for note in charts.notes)
    return (
        "<!doctype html><html><head><meta charset='utf-8'>"
        f"<title>{html.escape(charts.title)}</title>"
        "<style>body{font-family:system-ui,sans-serif;margin:2rem;max-width:1100px}"
        ".chart{margin-bottom:2rem}</style>"
        f"<script>{_plotly_js()}</script></head><body>"
        f"<h1>{html.escape(charts.title)}</h1>{divs}"
        f"<h2>Projection assumptions</h2><ul>{notes}</ul></body></html>"
    )


def charts_from_report(report: Report) -> Charts:
    """The page's series, read off a report."""
    margins = {
        f"{row.feature} / {tier.tier}": tier.margin_per_serving_usd for row in report.features for tier in row.tiers
    }
    projection: dict[str, list[tuple[int, float, float | None]]] = {}
    notes: list[str] = []
    if report.projection is not None:
        curves = [("all features", report.projection.points)]
        curves += [(f.feature, f.points) for f in report.projection.features]
        projection = {name: [(p.servings_per_month, p.cost_usd, p.margin_usd) for p in pts] for name, pts in curves}
        notes = list(report.projection.assumptions)
    window = f"{report.since or 'start'} to {report.until or 'now'}"
    return Charts(
        title=f"modelplane unit economics, {window}",
        cost_over_time={
            f: [(d.day, d.cost_per_serving_usd) for d in days] for f, days in report.cost_over_time.items()
        },
        margin_by_tier=margins,
        model_mix=report.total.model_mix,
        projection=projection,
        notes=notes,
    )
