"""The `modelplane` command.

Command groups are imported when first used, not at start-up: `modelplane eval run` and
every `--help` below the top level load only their own module, not plotly, numpy, the
economics report or the router's training code. `modelplane --help` lists every command
with its one-line help, so it imports them all.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Iterator, MutableMapping
from typing import Any

import typer
from typer.core import TyperGroup
from typer.main import get_command_from_info, get_group_from_info

# name → (module, attribute), in the order `modelplane --help` lists them. A `typer.Typer`
# attribute becomes a command group (`add_typer`), a function a single command (`command`).
COMMANDS: dict[str, tuple[str, str]] = {
    "serve": ("modelplane.cli.serve", "serve"),
    "report": ("modelplane.cli.report", "report"),
    "config": ("modelplane.cli.config", "app"),
    "keys": ("modelplane.cli.keys", "app"),
    "escalations": ("modelplane.cli.escalations", "app"),
    "cache": ("modelplane.cli.cache", "app"),
    "eval": ("modelplane.cli.eval", "app"),
    "router": ("modelplane.cli.router", "app"),
}


class _LazyCommands(MutableMapping[str, Any]):
    """The group's `commands`: every name is listed at once, a command is built when looked up.

    Typer's group only reads `commands` (`get`, iteration, `keys()` for "did you mean"), so
    deferring the import here keeps help, suggestions and invocation exactly as if eager.
    """

    def __init__(self) -> None:
        self._built: dict[str, Any] = {}

    def __getitem__(self, name: str) -> Any:
        if name not in self._built:
            if name not in COMMANDS:
                raise KeyError(name)
            self._built[name] = _build(name)
        return self._built[name]

    def __setitem__(self, name: str, command: Any) -> None:
        self._built[name] = command

    def __delitem__(self, name: str) -> None:
        del self._built[name]

    def __iter__(self) -> Iterator[str]:
        return iter({**dict.fromkeys(COMMANDS), **self._built})

    def __len__(self) -> int:
        return len({**dict.fromkeys(COMMANDS), **self._built})


class _LazyGroup(TyperGroup):
    def __init__(self, **attrs: Any) -> None:
        super().__init__(**attrs)
        self.commands = _LazyCommands()


def _build(name: str) -> Any:
    """The click command for `name`, built the way `app.add_typer` / `app.command` would have."""
    module, attribute = COMMANDS[name]
    target = getattr(importlib.import_module(module), attribute)
    holder = typer.Typer()
    if isinstance(target, typer.Typer):
        holder.add_typer(target, name=name)
        return get_group_from_info(
            holder.registered_groups[0],
            pretty_exceptions_short=app.pretty_exceptions_short,
            rich_markup_mode=app.rich_markup_mode,
            suggest_commands=app.suggest_commands,
        )
    holder.command(name)(target)
    return get_command_from_info(
        holder.registered_commands[0],
        pretty_exceptions_short=app.pretty_exceptions_short,
        rich_markup_mode=app.rich_markup_mode,
    )


app = typer.Typer(
    name="modelplane",
    help="A self-hosted model platform: one OpenAI-compatible gateway with routing, fallbacks and unit economics.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    cls=_LazyGroup,
)


@app.callback()
def _root() -> None:
    """Typer builds a group only for an app with commands or a callback; the commands come from COMMANDS."""


def run() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    app()
