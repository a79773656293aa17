"""`modelplane config …`: check a config file."""

from __future__ import annotations

import typer

from modelplane.cli.common import ConfigOption, console, exits_on_error, read_config

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
