"""`modelplane report`: unit economics per feature and tier from the ledger, and the projected cost curve."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console, Group
from rich.table import Table

from modelplane.cli.common import (
    ConfigOption,
    console,
    existing_ledger,
    exits_on_error,
    read_config,
    writing,
)
from modelplane.config.schema import Config
from modelplane.economics.charts import charts_from_report, render_page
from modelplane.economics.projection import GRAMMAR, ProjectionPoint, parse_what_if
from modelplane.economics.report import Economics, Report, build_report, report_json
from modelplane.errors import UsageError
from modelplane.ledger.queries import ReportFilter
from modelplane.ledger.store import LedgerStore

_DATE_HINT = "use a date (2025-01-31) or an ISO time (2025-01-31T12:00, UTC unless it has an offset)"


def render_table(report: Report, out: Console) -> None:
    """The report as rich tables: economics, model mix, projection and its assumptions."""
    for table in _economics_tables(report):
        out.print(table)
    out.print(_mix_table(report))
    if report.routing:
        out.print(_routing_table(report))
    if report.projection is not None:
        out.print(_projection_table(report))
        out.print("[bold]assumptions[/]")
        for line in report.projection.assumptions:
            out.print(f"  • {line}", markup=False)
    if report.total.unpriced_calls:
        out.print(
            f"[yellow]warning:[/] {report.total.unpriced_calls} call(s) in {report.total.unpriced_servings} "
            "serving(s) have no price; those servings are left out of cost and margin. Add the model's `price`."
        )


def _render_json(report: Report, out: Console) -> None:
    out.file.write(report_json(report).decode() + "\n")


def _render_html(report: Report, out: Console) -> None:
    out.file.write(render_page(charts_from_report(report)))


# Every output format is a function of the report object.
RENDERERS: dict[str, Callable[[Report, Console], None]] = {
    "table": render_table,
    "json": _render_json,
    "html": _render_html,
}


def report(
    config: ConfigOption = None,
    since: Annotated[str | None, typer.Option(help="From this date/time (UTC), inclusive.")] = None,
    until: Annotated[str | None, typer.Option(help="Up to this date (inclusive) or time (exclusive), UTC.")] = None,
    feature: Annotated[
        list[str] | None, typer.Option("--feature", "-f", metavar="FEATURE", help="Only this feature (repeatable).")
    ] = None,
    tier: Annotated[
        list[str] | None, typer.Option("--tier", "-t", metavar="TIER", help="Only this tier (repeatable).")
    ] = None,
    output_format: Annotated[
        str, typer.Option("--format", help="table, json, or html (one self-contained page of charts).")
    ] = "table",
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Write to this file instead of stdout.")] = None,
    what_if: Annotated[
        list[str] | None, typer.Option("--what-if", metavar="SCENARIO", help=f"Projection scenario: {GRAMMAR}.")
    ] = None,
    reprice: Annotated[
        bool, typer.Option("--reprice", help="Recompute every call's cost at today's prices, not those of its day.")
    ] = False,
) -> None:
    """Unit economics per feature and tier: tokens, cost, margin, cache, fallbacks, model mix, projection."""
    exits_on_error(_report)(config, since, until, feature or [], tier or [], output_format, out, what_if or [], reprice)


def _report(
    config_path: Path | None,
    since: str | None,
    until: str | None,
    features: list[str],
    tiers: list[str],
    output_format: str,
    out: Path | None,
    what_ifs: list[str],
    reprice: bool = False,
) -> None:
    renderer = RENDERERS.get(output_format)
    if renderer is None:
        raise UsageError(f"unknown format {output_format!r}", f"use one of {', '.join(RENDERERS)}")
    where = ReportFilter(
        _time(since, "--since"), _time(until, "--until", end_of_day=True), tuple(features), tuple(tiers)
    )
    if where.since is not None and where.until is not None and where.since >= where.until:
        raise UsageError("--since is not before --until", "swap them, or widen the window")
    for phrase in what_ifs:
        parse_what_if(phrase)  # a typo ends the command before the ledger is read
    if out is not None:
        with writing(out):  # its folder exists and can be written: found out before the ledger is read
            pass
    loaded = read_config(config_path, secrets=False)  # reads the ledger only: no provider secret needed
    result = asyncio.run(_build(existing_ledger(loaded), loaded.config, where, loaded.version, what_ifs, reprice))
    _check_names(result, loaded.config, features, tiers)
    if out is None:
        renderer(result, console)
        return
    with writing(out), out.open("w", encoding="utf-8") as handle:
        renderer(result, Console(file=handle, width=200, highlight=False, color_system=None))
    console.print(f"wrote {out}", markup=False)


async def _build(
    url: str, config: Config, where: ReportFilter, version: str, what_ifs: list[str], reprice: bool
) -> Report:
    store = LedgerStore.from_url(url)
    try:
        await store.open()
        return await build_report(store, config, where, config_version=version, what_ifs=what_ifs, reprice=reprice)
    finally:
        await store.close()


def _time(text: str | None, flag: str, *, end_of_day: bool = False) -> float | None:
    if text is None:
        return None
    try:
        if len(text) == 10:
            day = dt.date.fromisoformat(text)
            start = dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC)
            return (start + dt.timedelta(days=1 if end_of_day else 0)).timestamp()
        moment = dt.datetime.fromisoformat(text)
    except ValueError:
        raise UsageError(f"{flag}: not a date or time: {text!r}", _DATE_HINT) from None
    return (moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)).timestamp()


def _check_names(result: Report, config: Config, features: list[str], tiers: list[str]) -> None:
    """A name neither in config nor in the ledger is a typo, not an empty report."""
    seen_features = {row.feature for row in result.features if row.feature is not None}
    seen_tiers = {row.tier for row in result.tiers if row.tier is not None}
    for name in features:
        if name not in config.features and name not in seen_features:
            known = sorted(set(config.features) | seen_features)
            raise UsageError(f"unknown feature {name!r}", f"features: {', '.join(known) or 'none'}")
    for name in tiers:
        if name not in config.tiers and name not in seen_tiers:
            known = sorted(set(config.tiers) | seen_tiers)
            raise UsageError(f"unknown tier {name!r}", f"tiers: {', '.join(known) or 'none'}")


def _economics_tables(report: Report) -> list[Table]:
    """Three narrow tables rather than one too wide for a terminal: money, tokens, operations."""
    window = f"{report.since or 'start'} → {report.until or 'now'}"
    sections: list[tuple[str, tuple[str, ...], Callable[[Economics], list[str]]]] = [
        (
            f"cost and margin per serving ({window})",
            ("servings", "cost mean", "cost p50", "cost p95", "revenue", "margin", "margin %", "unpriced"),
            _money,
        ),
        ("tokens per serving (mean / p50 / p95)", ("input", "cached input", "output"), _tokens),
        (
            "cache, fallbacks, escalations, errors, latency",
            ("cache hit", "saved", "fallback", "escalated", "errors", "latency p50", "latency p95"),
            _operations,
        ),
    ]
    tables = []
    for title, columns, cells in sections:
        table = Table("feature / tier", *columns, title=title, title_justify="left")
        for column in table.columns[1:]:
            column.justify = "right"
        for row in report.features:
            table.add_row(row.feature or "", *cells(row))
            for tier_row in row.tiers:
                table.add_row(f"  {tier_row.tier}", *cells(tier_row), style="dim")
        table.add_section()
        for row in report.tiers:
            table.add_row(f"tier {row.tier}", *cells(row))
        table.add_row("all", *cells(report.total), style="bold")
        tables.append(table)
    return tables


def _money(row: Economics) -> list[str]:
    cost = row.cost_per_serving_usd
    unpriced = f"[yellow]{row.unpriced_calls} calls[/]" if row.unpriced_calls else "0"
    return [
        f"{row.servings:,}",
        _usd(cost.mean),
        _usd(cost.p50),
        _usd(cost.p95),
        _usd(row.revenue_per_serving_usd),
        _usd(row.margin_per_serving_usd),
        _num(row.margin_pct, "{:.1f}%"),
        unpriced,
    ]


def _tokens(row: Economics) -> list[str]:
    t = row.tokens_per_serving
    return ["/".join(_num(v, "{:,.0f}") for v in (s.mean, s.p50, s.p95)) for s in (t.input, t.cached_input, t.output)]


def _operations(row: Economics) -> list[str]:
    return [
        f"{row.cache_hit_rate:.1%}",
        _num(row.saved_usd, "${:,.2f}"),
        f"{row.fallback_rate:.1%}",
        f"{row.escalation_rate:.1%}",
        f"{row.error_rate:.1%}",
        _num(row.latency_ms.p50, "{:,.0f} ms"),
        _num(row.latency_ms.p95, "{:,.0f} ms"),
    ]


def _mix_table(report: Report) -> Table:
    table = Table("feature", "calls", "model mix (share of calls)", title="model mix", title_justify="left")
    for row in [*report.features, report.total]:
        mix = ", ".join(f"{model} {share:.1%}" for model, share in row.model_mix.items())
        table.add_row(row.feature or "all", f"{row.calls:,}", mix or "-")
    return table


def _routing_table(report: Report) -> Table:
    """Where routed features sent their servings; regret and savings measured by shadow judging."""
    columns = ("strategy", "servings", "routed to (share of servings)", "judged", "regret", "saved", "saved / cheap")
    table = Table("feature", *columns, title="routing", title_justify="left")
    for column in table.columns[2:]:
        column.justify = "right"
    for row in report.routing:
        share = ", ".join(f"{model} {part:.1%}" for model, part in row.share.items())
        regret = "-" if row.regret is None else f"{row.regret:.1%}"
        saved = (_num(row.saved_usd, "${:,.4f}"), _usd(row.saved_per_serving_usd))
        table.add_row(row.feature, row.strategy, f"{row.servings:,}", share or "-", f"{row.judged:,}", regret, *saved)
    return table


def _projection_table(report: Report) -> Group:
    assert report.projection is not None
    projection = report.projection
    title = "projected monthly cost and margin" + (
        f" (what-if: {'; '.join(projection.what_ifs)})" if projection.what_ifs else ""
    )
    table = Table(
        "servings / month",
        "cache hit",
        "cost / month",
        "cost / serving",
        "revenue",
        "margin",
        "margin %",
        title=title,
        title_justify="left",
    )
    baseline: list[ProjectionPoint | None] = [*projection.baseline] if projection.baseline else []
    baseline += [None] * (len(projection.points) - len(baseline))
    for point, base in zip(projection.points, baseline, strict=True):
        cost = _usd(point.cost_usd, 0) + (f" (was {_usd(base.cost_usd, 0)})" if base else "")
        table.add_row(
            f"{point.servings_per_month:,}",
            f"{point.cache_hit_rate:.1%}",
            cost,
            _usd(point.cost_per_serving_usd),
            _usd(point.revenue_usd, 0),
            _usd(point.margin_usd, 0),
            _num(point.margin_pct, "{:.1f}%"),
        )
    per_feature = Table(
        "feature",
        *(f"{n:,}/mo" for n in (1_000, 100_000, 10_000_000)),
        title="monthly cost per feature at its own volume",
        title_justify="left",
    )
    for feature in projection.features:
        by_n = {p.servings_per_month: p for p in feature.points}
        per_feature.add_row(feature.feature, *(_point_cost(by_n.get(n)) for n in (1_000, 100_000, 10_000_000)))
    return Group(table, per_feature)


def _point_cost(point: ProjectionPoint | None) -> str:
    if point is None:
        return "-"
    return f"{_usd(point.cost_usd, 0)} / margin {_usd(point.margin_usd, 0)}"


def _usd(value: float | None, digits: int = 6) -> str:
    if value is None:
        return "-"
    sign = "-" if value < 0 else ""
    value = abs(value)
    if digits == 0:
        return f"{sign}${value:,.0f}" if value >= 100 else f"{sign}${value:,.2f}"
    return f"{sign}${value:.{digits}f}"


def _num(value: float | None, pattern: str) -> str:
    return "-" if value is None else pattern.format(value)
