"""`modelplane eval run|list|show|compare|import`: evaluation suites, their runs, and the CI gate.

Exit codes: 0 the run (and its gate, if asked) passed, 1 the gate failed, 2 the input was
wrong (a bad suite, flag, config or baseline — said in one line before anything runs).
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import time
from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, NamedTuple, ParamSpec, TypeVar

import typer
from rich.table import Table
from rich.text import Text

from modelplane.cli.common import (
    ConfigOption,
    console,
    err_console,
    exits_on_error,
    home_dir,
    read_config,
    writable_dir,
    writing,
)
from modelplane.errors import UsageError

if TYPE_CHECKING:
    from modelplane.config.load import LoadedConfig
    from modelplane.evals.gate import GateReport, GateThresholds
    from modelplane.evals.results import CaseResult, RunResult
    from modelplane.evals.runner import CaseSummary
    from modelplane.evals.store import RunStore
    from modelplane.evals.suite import Suite

P = ParamSpec("P")
R = TypeVar("R")

app = typer.Typer(help="Run eval suites, gate changes in CI, and compare runs.", no_args_is_help=True)

RunsDirOption = Annotated[
    Path | None,
    typer.Option("--runs-dir", metavar="DIR", help="Where runs are stored (default: evals/runs in $MODELPLANE_HOME)."),
]
TABLE_ROWS = 50  # more cases than this: the table lists the failing ones only


def _plain_errors(func: Callable[P, R]) -> Callable[P, R]:
    """Suite problems carry paths like `tests[3]`: printed verbatim (not as rich markup), exit 2."""

    @wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return func(*args, **kwargs)
        except UsageError as exc:
            err_console.print(f"error: {exc}", markup=False, style="red")
            if exc.hint:
                err_console.print(f"hint: {exc.hint}", markup=False)
            raise typer.Exit(2) from None

    return exits_on_error(wrapper)


def _store(runs_dir: Path | None) -> RunStore:
    from modelplane.evals.store import RunStore

    return RunStore(runs_dir or home_dir() / "evals" / "runs")


@app.command("run")
@_plain_errors
def run(
    suite_path: Annotated[Path, typer.Argument(metavar="SUITE", help="The suite YAML file.")],
    config: ConfigOption = None,
    concurrency: Annotated[int, typer.Option("--concurrency", "-j", min=1, help="Cases in flight at once.")] = 8,
    repeats: Annotated[int | None, typer.Option("--repeats", min=1, help="Override the suite's repeats.")] = None,
    no_cache: Annotated[bool, typer.Option("--no-cache", help="Ask the target again; do not read or write.")] = False,
    runs_dir: RunsDirOption = None,
    run_id: Annotated[str | None, typer.Option("--run-id", help="Name the run (default: time + random).")] = None,
    gate: Annotated[bool, typer.Option("--gate", help="Fail (exit 1) unless the run meets its thresholds.")] = False,
    pass_rate: Annotated[float | None, typer.Option("--pass-rate", min=0, max=1, help="Gate: overall.")] = None,
    tag_pass_rate: Annotated[
        list[str] | None, typer.Option("--tag-pass-rate", metavar="TAG=X", help="Gate: a tag's pass rate.")
    ] = None,
    mean_score: Annotated[float | None, typer.Option("--mean-score", min=0, max=1, help="Gate: mean score.")] = None,
    max_regressions: Annotated[
        int | None, typer.Option("--max-regressions", min=0, help="Gate: regressions tolerated vs the baseline.")
    ] = None,
    alpha: Annotated[
        float | None, typer.Option("--alpha", help="Gate: McNemar significance level, in (0, 1); default 0.05.")
    ] = None,
    baseline: Annotated[
        str | None, typer.Option("--baseline", metavar="RUN|FILE", help="Compare with this run (regressions).")
    ] = None,
    junit: Annotated[Path | None, typer.Option("--junit", help="Write JUnit XML here.")] = None,
    summary_md: Annotated[Path | None, typer.Option("--summary-md", help="Write a Markdown summary here.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the run as JSON instead of a table.")] = False,
    api_key: Annotated[
        str | None,
        typer.Option("--api-key", envvar="MODELPLANE_API_KEY", help="Key for a feature target when keys are set."),
    ] = None,
    feature: Annotated[str | None, typer.Option("--feature", help="Evaluate this feature instead.")] = None,
    model: Annotated[str | None, typer.Option("--model", help="Evaluate this model directly instead.")] = None,
) -> None:
    """Run a suite against its target in-process; store the run; gate it."""
    from dataclasses import replace

    from modelplane.evals.suite import load_suite

    suite = load_suite(suite_path)
    if feature is not None and model is not None:
        raise UsageError("--feature and --model both name a target", "pass one of them")
    if feature is not None or model is not None:
        suite.target = replace(suite.target, feature=feature, model=model)
    store = _store(runs_dir)
    if run_id is not None:
        store.path(run_id)  # a bad id fails now, not after the run
    for folder in (store.root, *(path.parent for path in (junit, summary_md) if path is not None)):
        writable_dir(folder)  # and so does a folder that cannot be written
    flags = _GateFlags(pass_rate, tag_pass_rate or [], mean_score, max_regressions, alpha)
    thresholds = _thresholds(suite, flags)
    baseline_run = None
    if baseline is not None:
        from modelplane.evals.gate import load_baseline

        baseline_run = load_baseline(baseline, store.root)
    loaded = read_config(config)
    meta: dict[str, object] = {"suite_path": str(suite_path), "config_source": loaded.source}
    result = asyncio.run(_run(suite, loaded, concurrency, repeats, no_cache, run_id, api_key, meta))
    with writing(store.path(result.id)):
        saved = store.save(result)
    report = None
    if gate or baseline_run is not None or junit is not None or summary_md is not None:
        from modelplane.evals.gate import evaluate_gate

        report = evaluate_gate(result, thresholds, baseline_run)
    if as_json:
        sys.stdout.write(result.to_json().decode() + "\n")
    else:
        _print_run(result)
        console.print(f"run {result.id} saved to {saved}", markup=False)
    if report is not None and (gate or baseline_run is not None):
        for line in report.lines(verdict=gate):  # without --gate there is no verdict to print
            (err_console if as_json else console).print(line, markup=False)
    _write_reports(result, report, baseline_run, junit, summary_md)
    if gate and report is not None and not report.passed:
        raise typer.Exit(1)


async def _run(
    suite: Suite,
    loaded: LoadedConfig,
    concurrency: int,
    repeats: int | None,
    no_cache: bool,
    run_id: str | None,
    api_key: str | None,
    meta: dict[str, object],
) -> RunResult:
    from modelplane.evals.runner import RunOptions, evaluate

    logger = logging.getLogger("modelplane")
    level = logger.level
    logger.setLevel(logging.WARNING)  # the table is the output, not the gateway's start-up lines
    try:
        total = len(suite.cases) * (repeats or suite.repeats)
        cache_path = None if no_cache else loaded.home / "evals" / "cache.sqlite"
        authorization = None if api_key is None else f"Bearer {api_key}"
        with _progress(total) as advance:
            options = RunOptions(concurrency, repeats, run_id, meta)
            return await evaluate(
                suite, loaded, options, cache_path=cache_path, authorization=authorization, progress=advance
            )
    finally:
        logger.setLevel(level)


class _progress:
    """A rich progress bar on a terminal; nothing when piped or under CI=true."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.bar: object | None = None
        show = err_console.is_terminal and os.environ.get("CI", "").lower() not in ("1", "true", "yes")
        if show:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

            self.bar = Progress(
                "[progress.description]{task.description}",
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                console=err_console,
                transient=True,
            )

    def __enter__(self) -> Callable[[CaseResult], None] | None:
        from rich.progress import Progress

        bar = self.bar
        if not isinstance(bar, Progress):
            return None
        bar.start()
        task = bar.add_task("eval", total=self.total)
        return lambda _result: bar.advance(task)

    def __exit__(self, *exc: object) -> None:
        from rich.progress import Progress

        if isinstance(self.bar, Progress):
            self.bar.stop()


class _GateFlags(NamedTuple):
    pass_rate: float | None
    tag_pass_rate: list[str]  # TAG=X
    mean_score: float | None
    max_regressions: int | None
    alpha: float | None


def _thresholds(suite: Suite, flags: _GateFlags) -> GateThresholds:
    """The suite's own `gate:` section with the flags over it: a flag wins for its field, the rest stay.

    `--tag-pass-rate` merges per tag: it overrides that tag's threshold and keeps the suite's others.
    """
    from modelplane.evals.gate import GateThresholds

    per_tag = {}
    for item in flags.tag_pass_rate:
        tag, _, value = item.partition("=")
        try:
            rate = float(value)
        except ValueError:
            rate = -1.0
        if not tag or not 0 <= rate <= 1:
            raise UsageError(
                f"--tag-pass-rate {item!r}: expected TAG=X with X in [0, 1]", "e.g. --tag-pass-rate billing=0.9"
            )
        per_tag[tag] = rate
    if flags.alpha is not None and not 0 < flags.alpha < 1:
        raise UsageError(f"--alpha {flags.alpha:g}: expected a number strictly between 0 and 1", "e.g. --alpha 0.05")
    section = suite.gate

    def pick(flag: float | None, key: str) -> float | None:
        return flag if flag is not None else section.get(key)

    max_regressions = flags.max_regressions
    if max_regressions is None:
        max_regressions = section.get("max_regressions")
    alpha = pick(flags.alpha, "alpha")
    return GateThresholds(
        pick(flags.pass_rate, "pass_rate"),
        {**(section.get("tag_pass_rate") or {}), **per_tag},
        pick(flags.mean_score, "mean_score"),
        max_regressions,
        0.05 if alpha is None else alpha,
    )


def _write_reports(
    run: RunResult, report: GateReport | None, baseline: RunResult | None, junit: Path | None, summary: Path | None
) -> None:
    if junit is not None:
        from modelplane.evals.junit import write_junit

        with writing(junit):
            write_junit(run, junit, report)
    if summary is not None:
        from modelplane.evals.summary import markdown

        with writing(summary):
            summary.write_text(markdown(run, report, baseline), encoding="utf-8")


def _print_run(run: RunResult, every: bool = False) -> None:
    from modelplane.evals.runner import summarise

    summaries = summarise(run)
    failing_first: dict[str, CaseResult] = {}
    for case in run.cases:
        if not case.passed:
            failing_first.setdefault(case.case_id, case)
    rows = summaries if every or len(summaries) <= TABLE_ROWS else [s for s in summaries if s.passes < s.runs]
    table = Table(title=Text(f"{run.suite} → {run.target}"), title_justify="left")
    for column in ("case", "pass", "score", "cost $", "why it failed"):
        table.add_column(column, justify="right" if column in ("pass", "score", "cost $") else "left")
    for s in rows[: TABLE_ROWS if not every else None]:
        failed = failing_first.get(s.case_id)
        why = ""
        if failed is not None:
            why = failed.error or next((f"{a.type}: {a.reason}" for a in failed.assertions if not a.passed), "")
        cost = "?" if s.cost_usd is None else f"{s.cost_usd:.6f}"
        label = s.description or s.case_id
        table.add_row(Text(label), f"{s.passes}/{s.runs}", f"{s.mean_score:.2f}", cost, Text(why[:100]))
    if rows:
        console.print(table)
    if not every and (len(rows) < len(summaries) or len(rows) > TABLE_ROWS):
        shown = min(len(rows), TABLE_ROWS)
        hint = f"`modelplane eval show {run.id}` lists them all"
        console.print(f"(the table shows {shown} of {len(summaries)} cases, failing ones only; {hint})", markup=False)
    console.print(_totals(run, summaries), markup=False)


def _totals(run: RunResult, cases: list[CaseSummary]) -> str:
    n = len(cases) or 1
    passed = sum(1 for c in run.cases if c.passed)
    costs = [c.cost_usd for c in run.cases]
    cost = "unknown" if None in costs else f"${sum(c for c in costs if c is not None):.6f}"
    tokens = sum(c.input_tokens + c.output_tokens for c in run.cases)
    line = (
        f"{len(cases)} cases x {run.repeats} repeat(s): {passed}/{len(run.cases)} passed "
        f"({100 * passed / max(1, len(run.cases)):.1f}%), mean score "
        f"{sum(c.mean_score for c in cases) / n:.3f}"
    )
    if run.repeats > 1:
        line += f", pass@{run.repeats} {100 * sum(c.pass_at_k for c in cases) / n:.1f}%"
        line += f", pass^{run.repeats} {100 * sum(c.pass_all_k for c in cases) / n:.1f}%"
    cached = sum(1 for c in run.cases if c.cached)
    wall = run.finished_at - run.started_at
    return f"{line}; cost {cost}, {tokens} tokens; {cached} cached; {wall:.2f} s"


@app.command("list")
@_plain_errors
def list_runs(
    runs_dir: RunsDirOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="JSON lines instead of a table.")] = False,
) -> None:
    """Stored runs, newest first."""
    import dataclasses

    import orjson

    if runs_dir is not None and not runs_dir.is_dir():  # a typo, not an empty history
        raise UsageError(f"no runs folder at {runs_dir}", "pass the --runs-dir that `eval run` wrote to")
    infos = _store(runs_dir).list()
    if as_json:
        for info in infos:
            sys.stdout.write(orjson.dumps(dataclasses.asdict(info)).decode() + "\n")
        return
    table = Table()
    for column in ("run", "suite", "target", "started", "passed", "config"):
        table.add_column(column)
    for info in infos:
        started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(info.started_at))
        cells = (info.id, info.suite, info.target, started, f"{info.passed}/{info.cases}", info.config_version)
        table.add_row(*(Text(cell) for cell in cells))
    console.print(table)


@app.command("show")
@_plain_errors
def show(
    run_ref: Annotated[str, typer.Argument(metavar="RUN", help="A run id, or a run JSON file.")],
    runs_dir: RunsDirOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="The run as JSON.")] = False,
) -> None:
    """One run: every case, its verdict and why it failed."""
    result = _store(runs_dir).load(run_ref)
    if as_json:
        sys.stdout.write(result.to_json().decode() + "\n")
        return
    _print_run(result, every=True)
    console.print(f"config {result.config_version}; started {time.ctime(result.started_at)}", markup=False)


@app.command("compare")
@_plain_errors
def compare(
    baseline: Annotated[str, typer.Argument(metavar="RUN_A", help="The baseline run (id or file).")],
    candidate: Annotated[str, typer.Argument(metavar="RUN_B", help="The run compared with it.")],
    runs_dir: RunsDirOption = None,
) -> None:
    """RUN_B against RUN_A: pass rates, McNemar p-value, bootstrap intervals, regressions and fixes."""
    from modelplane.evals.gate import GateThresholds, evaluate_gate

    store = _store(runs_dir)
    before, after = store.load(baseline), store.load(candidate)
    report = evaluate_gate(after, GateThresholds(), before)
    console.print(f"{after.id} ({after.suite}) against {before.id}", markup=False)
    for line in report.lines(verdict=False):  # the verdict and its reasons are the gate's, not a comparison's
        console.print(line, markup=False)


@app.command("import")
@_plain_errors
def import_promptfoo(
    source: Annotated[Path, typer.Argument(metavar="PROMPTFOOCONFIG", help="A promptfooconfig.yaml.")],
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Write the suite here (default: stdout).")] = None,
    mapping: Annotated[
        list[str] | None,
        typer.Option("--map", metavar="PROVIDER=MODEL", help="Map a promptfoo provider id to a configured model."),
    ] = None,
) -> None:
    """Convert a promptfoo config into a modelplane suite; say plainly what could not be mapped."""
    from modelplane.evals.promptfoo import import_config, parse_mapping

    converted = import_config(source, parse_mapping(mapping or []))
    if out is None:
        sys.stdout.write(converted.yaml)
    else:
        with writing(out):
            out.write_text(converted.yaml, encoding="utf-8")
        err_console.print(f"wrote {out} ({converted.tests} tests)", markup=False)
    for note in converted.notes:
        err_console.print(f"not mapped: {note}", markup=False)
