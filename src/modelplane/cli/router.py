"""`modelplane router …`: train a learned router from per-prompt outcomes, and measure one."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Annotated, cast

import numpy as np
import typer
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from modelplane.cli.common import (
    ConfigOption,
    console,
    err_console,
    existing_ledger,
    exits_on_error,
    fail,
    read_config,
    writable_dir,
    writing,
)
from modelplane.economics.prices import PriceBook
from modelplane.embeddings.base import Embedder, EmbedderSpec, embedder_from_config, is_async
from modelplane.errors import ConfigError, UsageError
from modelplane.routing.data import Outcome, Outcomes, outcomes_from_rows, read_outcomes_csv
from modelplane.routing.learned import LearnedRouter
from modelplane.routing.metrics import RouterMetrics, evaluate
from modelplane.routing.train import TrainOptions, embed_prompts, train_router

app = typer.Typer(help="Train a learned router and measure it (APGR, CPT, cost saved).", no_args_is_help=True)

_DATA_HELP = "CSV with a prompt column and a True/False column per model; more files may follow (--data *.csv)."
DataOption = Annotated[list[Path] | None, typer.Option("--data", "-d", metavar="FILE...", help=_DATA_HELP)]
# The files after the first: `--data a.csv b.csv` (what a shell glob gives) as well as `--data a.csv --data b.csv`.
MoreData = Annotated[list[Path] | None, typer.Argument(metavar="FILE", hidden=True, show_default=False)]
_WEAK_HELP = "Column of the weak (cheap) model's outcomes."
_STRONG_HELP = "Column of the strong model's outcomes."


@app.command("train")
@exits_on_error
def train(
    out: Annotated[Path, typer.Option("--out", "-o", help="Router file to write (JSON).")],
    data: DataOption = None,
    more: MoreData = None,
    weak: Annotated[str | None, typer.Option(help=_WEAK_HELP)] = None,
    strong: Annotated[str | None, typer.Option(help=_STRONG_HELP)] = None,
    from_ledger: Annotated[
        bool, typer.Option("--from-ledger", help="Also train on the ledger's shadow-judged servings.")
    ] = False,
    feature: Annotated[str | None, typer.Option(help="With --from-ledger: only this feature's servings.")] = None,
    config: ConfigOption = None,
    prompt_column: Annotated[str, typer.Option(help="Column of the prompts.")] = "prompt",
    holdout: Annotated[
        list[str] | None,
        typer.Option(
            metavar="STEM", help="Leave this data file (by its stem) out of training and report on it (repeatable)."
        ),
    ] = None,
    embedding_l2: Annotated[float, typer.Option(help="L2 penalty on the embedding's weights.")] = 3e4,
    text_l2: Annotated[float, typer.Option(help="L2 penalty on the text features' weights.")] = 300.0,
) -> None:
    """Train a router from per-prompt outcomes of a weak and a strong model (CSV files and/or the ledger)."""
    if feature is not None and not from_ledger:
        fail("--feature picks the ledger's servings", "add --from-ledger, or leave out --feature")
    ledger = (config, feature) if from_ledger else None
    _train(
        _data_files(data, more),
        weak,
        strong,
        ledger,
        out,
        prompt_column,
        holdout or [],
        TrainOptions(embedding_l2, text_l2),
    )


def _train(
    files: list[Path],
    weak: str | None,
    strong: str | None,
    ledger: tuple[Path | None, str | None] | None,
    out: Path,
    prompt_column: str,
    holdout: list[str],
    options: TrainOptions,
) -> None:
    writable_dir(out.parent)  # before the training, not after it
    data = Outcomes.of(_training_outcomes(files, weak, strong, prompt_column, ledger))
    unknown = sorted(set(holdout) - set(data.groups))
    if unknown:
        raise UsageError(f"--holdout {unknown[0]!r} names no data file", "pass a data file's stem, e.g. mmlu_anatomy")
    held = np.array([g in holdout for g in data.groups], dtype=bool)
    training = data.select(~held)
    if training.strong_ok.all() == training.strong_ok.any() and training.weak_ok.all() == training.weak_ok.any():
        raise UsageError("every outcome in the training data is the same", "the data must show both models fail")
    embedder = _embedder(EmbedderSpec())
    vectors = _embed(embedder, data.prompts)
    info = {"weak": weak, "strong": strong, "data": [f.name for f in files], "ledger": ledger is not None}
    info["holdout"] = holdout
    fits = max(2, min(options.inner_folds, len(training))) + 1  # the cross-fitted models and the final one
    columns = (TextColumn("fitting"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=err_console, transient=True) as progress:
        task = progress.add_task("fit", total=fits)
        router = train_router(
            training,
            vectors[~held],
            embedder=embedder.name,
            embedder_spec=EmbedderSpec(),
            options=options,
            info=info,
            progress=lambda n: progress.advance(task, n),
        )
    with writing(out):
        router.save(out)
    console.print(f"router {router.version} → {out} ({len(training)} prompts, {embedder.name})")
    if held.any():
        heldout = data.select(held)
        metrics = _metrics(router.score_many(heldout.prompts, vectors[held]), heldout, None)
        console.print(_table(metrics, f"held out: {', '.join(holdout)}", None))


def _training_outcomes(
    files: list[Path],
    weak: str | None,
    strong: str | None,
    prompt_column: str,
    ledger: tuple[Path | None, str | None] | None,
) -> list[Outcome]:
    if not files and ledger is None:
        raise UsageError("no training data", "pass --data FILE... and/or --from-ledger")
    outcomes: list[Outcome] = []
    if files:
        if not weak or not strong:
            raise UsageError("which columns hold the models' outcomes?", "pass --weak and --strong")
        outcomes.extend(read_outcomes_csv(files, weak, strong, prompt_column=prompt_column))
    if ledger is not None:
        loaded = read_config(ledger[0], secrets=False)  # reads the ledger only
        feature = ledger[1]
        if feature is not None and feature not in loaded.config.features:
            known = ", ".join(sorted(loaded.config.features)) or "none are configured"
            raise UsageError(f"unknown feature {feature!r}", f"known features: {known}")
        judged = asyncio.run(_judged(existing_ledger(loaded), feature))
        if not judged:
            raise UsageError("the ledger holds no judged servings", "turn on `route.shadow` for a feature first")
        outcomes.extend(judged)
    return outcomes


async def _judged(url: str, feature: str | None) -> list[Outcome]:
    from modelplane.ledger.store import LedgerStore
    from modelplane.routing.shadow import judged_rows

    store = LedgerStore.from_url(url)
    try:
        await store.open()
        rows = await judged_rows(store, feature)
    finally:
        await store.close()
    # Each feature is a group (as each CSV file is), so training cross-fits across features.
    return outcomes_from_rows([{**row, "group": f"ledger:{row['group']}"} for row in rows])


@app.command("eval")
def eval_(
    router_path: Annotated[Path, typer.Option("--router", "-r", help="Router file (from `router train`).")],
    data: DataOption = None,
    more: MoreData = None,
    weak: Annotated[str | None, typer.Option(help=f"{_WEAK_HELP} [default: the one it was trained on]")] = None,
    strong: Annotated[str | None, typer.Option(help=f"{_STRONG_HELP} [default: the one it was trained on]")] = None,
    prompt_column: Annotated[str, typer.Option(help="Column of the prompts.")] = "prompt",
    weak_price: Annotated[float | None, typer.Option(help="Weak model's price per call (any currency unit).")] = None,
    strong_price: Annotated[float | None, typer.Option(help="Strong model's price per call.")] = None,
    config: ConfigOption = None,
    weak_model: Annotated[str | None, typer.Option(help="Price the weak model as this config model.")] = None,
    strong_model: Annotated[str | None, typer.Option(help="Price the strong model as this config model.")] = None,
    input_tokens: Annotated[int, typer.Option(help="Input tokens per call, to price config models.")] = 500,
    output_tokens: Annotated[int, typer.Option(help="Output tokens per call, to price config models.")] = 250,
    as_json: Annotated[bool, typer.Option("--json", help="Print the figures as JSON.")] = False,
) -> None:
    """APGR, CPT(50/80/95 %) and the cost saved at 95 % of the strong model's quality, on outcome data."""
    exits_on_error(_eval)(
        router_path, (data, more), weak, strong, prompt_column, (weak_price, strong_price),
        (config, weak_model, strong_model, input_tokens, output_tokens), as_json,
    )  # fmt: skip


def _eval(
    router_path: Path,
    given: tuple[list[Path] | None, list[Path] | None],
    weak: str | None,
    strong: str | None,
    prompt_column: str,
    prices: tuple[float | None, float | None],
    priced_by: tuple[Path | None, str | None, str | None, int, int],
    as_json: bool,
) -> None:
    files = _data_files(*given)
    if not files:
        raise UsageError("no data to measure the router on", "pass --data FILE...")
    router = load_router(router_path)
    weak = weak or str(router.info.get("weak") or "")
    strong = strong or str(router.info.get("strong") or "")
    if not weak or not strong:
        raise UsageError("which columns hold the models' outcomes?", "pass --weak and --strong")
    price_pair = _prices(prices, priced_by)
    data = Outcomes.of(read_outcomes_csv(files, weak, strong, prompt_column=prompt_column))
    embedder = _embedder(router.embedder_spec)
    if embedder.name != router.embedder:
        raise UsageError(f"router {router_path} was trained on {router.embedder}, this embedder is {embedder.name}")
    scores = router.score_many(data.prompts, _embed(embedder, data.prompts))
    metrics = _metrics(scores, data, price_pair)
    thresholds = {
        f"cpt{round(x * 100)}": float(np.quantile(scores, 1 - share))
        for x, share in ((0.5, metrics.cpt50), (0.8, metrics.cpt80), (0.95, metrics.cpt95))
    }
    if as_json:
        document = {"router": router.version, **metrics.as_dict(), "thresholds": thresholds}
        console.file.write(json.dumps(document, indent=2) + "\n")
        return
    console.print(_table(metrics, f"router {router.version} on {len(data)} prompts", thresholds))


def _data_files(data: list[Path] | None, more: list[Path] | None) -> list[Path]:
    """`--data` files and the arguments after the options (more data files), each checked to be a file.

    The arguments are where a misplaced value ends up (`--weak a b`), so a missing one is named as such.
    """
    for path in data or []:
        if str(path).startswith("-"):
            raise UsageError(f"--data needs a file, got {str(path)!r}", "pass --data FILE [FILE...]")
    for path in more or []:
        if not path.is_file():
            raise UsageError(
                f"unexpected argument {str(path)!r} (read as a data file; there is no such file)",
                "put the data files after --data, and give every option one value",
            )
    return [*(data or []), *(more or [])]


def load_router(path: Path) -> LearnedRouter:
    """The router file, or a one-line UsageError saying what is wrong with it."""
    try:
        return LearnedRouter.load(path)
    except ConfigError as exc:
        reason = exc.issues[0].message if exc.issues else str(exc)
        raise UsageError(f"{path}: {reason}", "pass a file written by `modelplane router train`") from None


def _prices(
    prices: tuple[float | None, float | None], priced_by: tuple[Path | None, str | None, str | None, int, int]
) -> tuple[float, float] | None:
    weak_price, strong_price = prices
    config, weak_model, strong_model, input_tokens, output_tokens = priced_by
    if weak_price is not None or strong_price is not None:
        if weak_price is None or strong_price is None or strong_price <= 0 or weak_price < 0:
            raise UsageError("give both prices, the strong one above 0", "pass --weak-price and --strong-price")
        return weak_price, strong_price
    if weak_model is None and strong_model is None:
        return None
    if weak_model is None or strong_model is None:
        raise UsageError("name both models to price them", "pass --weak-model and --strong-model")
    book = PriceBook.from_config(read_config(config, secrets=False).config)
    now = time.time()
    per_call = []
    for name in (weak_model, strong_model):
        price = book.price_at(name, now)
        if price is None:
            raise UsageError(f"model {name!r} has no price in the config", "give it a `price`, or pass --*-price")
        per_call.append((input_tokens * price.input + output_tokens * price.output) / 1e6)
    if per_call[1] <= 0:
        raise UsageError(f"model {strong_model!r} costs nothing per call", "the strong model must have a price")
    return per_call[0], per_call[1]


def _metrics(scores: np.ndarray, data: Outcomes, prices: tuple[float, float] | None) -> RouterMetrics:
    weak_price, strong_price = prices if prices else (None, None)
    try:
        return evaluate(scores, data.weak_ok, data.strong_ok, weak_price=weak_price, strong_price=strong_price)
    except ValueError as exc:
        raise UsageError(f"cannot measure a router on this data: {exc}") from None


def _embedder(spec: EmbedderSpec) -> Embedder:
    embedder = embedder_from_config(spec)
    if is_async(embedder):  # only provider embedders are async, and routers are trained on local ones
        raise UsageError(f"the router's embedder ({spec.kind}) is not a local one")
    return cast(Embedder, embedder)


def _embed(embedder: Embedder, prompts: list[str]) -> np.ndarray:
    columns = (TextColumn("embedding"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, console=err_console, transient=True) as progress:
        task = progress.add_task("embed", total=len(prompts))
        return embed_prompts(embedder, prompts, lambda n: progress.advance(task, n))


def _table(metrics: RouterMetrics, title: str, thresholds: dict[str, float] | None) -> Table:
    table = Table(title=title, title_justify="left")
    table.add_column("metric")
    table.add_column("value", justify="right")
    table.add_column("threshold", justify="right")

    def at(key: str) -> str:
        return f"{thresholds[key]:.3f}" if thresholds else ""

    table.add_row("weak / strong accuracy", f"{metrics.weak_accuracy:.1%} / {metrics.strong_accuracy:.1%}", "")
    table.add_row("APGR", f"{metrics.apgr:.3f}", "")
    table.add_row("CPT(50%)", f"{metrics.cpt50:.1%} strong calls", at("cpt50"))
    table.add_row("CPT(80%)", f"{metrics.cpt80:.1%} strong calls", at("cpt80"))
    table.add_row("CPT(95%)", f"{metrics.cpt95:.1%} strong calls", at("cpt95"))
    table.add_row("95% of strong quality at", f"{metrics.share_at_95_quality:.1%} strong calls", "")
    saving = metrics.saving_at_95_quality
    table.add_row("cost saved there vs all-strong", "no prices given" if saving is None else f"{saving:.1%}", "")
    return table
