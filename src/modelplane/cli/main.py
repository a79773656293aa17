"""The `modelplane` command."""

from __future__ import annotations

import logging

import typer

from modelplane.cli import cache, config, escalations, eval, keys, report, router, serve

app = typer.Typer(
    name="modelplane",
    help="A self-hosted model platform: one OpenAI-compatible gateway with routing, fallbacks and unit economics.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.command("serve")(serve.serve)
app.add_typer(config.app, name="config")
app.add_typer(keys.app, name="keys")
app.add_typer(escalations.app, name="escalations")
app.add_typer(cache.app, name="cache")
app.command("report")(report.report)
app.add_typer(eval.app, name="eval")
app.add_typer(router.app, name="router")


def run() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    app()
