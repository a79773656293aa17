"""`modelplane config …`: check a config file."""

from __future__ import annotations

import typer

from modelplane.cli.common import ConfigOption, console, exits_on_error, read_config
from modelplane.economics.prices import PriceBook

app = typer.Typer(help="Check and inspect the config.", no_args_is_help=True)


@app.command("check")
@exits_on_error
def check(config: ConfigOption = None) -> None:
    """Validate the config: exit 0, or 2 with every error and where it is."""
    loaded = read_config(config)
    cfg = loaded.config
    console.print(
        f"ok: {loaded.source} (version {loaded.version}): {len(cfg.providers)} providers, {len(cfg.models)} models, "
        f"{len(cfg.features)} features, {len(cfg.tiers)} tiers, {len(cfg.keys)} keys"
    )
    book = PriceBook.from_config(cfg)
    from_table = sorted(name for name, history in book.histories.items() if history.source.startswith("table:"))
    if from_table:
        console.print(
            f"priced from the shipped table (list prices as of {book.table_as_of}; check them): {', '.join(from_table)}"
        )
    unpriced = book.unpriced(list(cfg.models))
    if unpriced:
        console.print(f"unpriced (their calls record cost null): {', '.join(unpriced)}")
