"""What every command shares: where state lives, which config to read, and how errors end."""

from __future__ import annotations

import errno
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import wraps
from pathlib import Path
from typing import Annotated, ParamSpec, TypeVar

import typer
from rich.console import Console

from modelplane.config.load import LoadedConfig, load_config
from modelplane.errors import ConfigError, ModelplaneError, UsageError

P = ParamSpec("P")
R = TypeVar("R")

err_console = Console(stderr=True, highlight=False, soft_wrap=True)
# Piped or redirected output gets room for the report's tables rather than a terminal's 80 columns.
console = Console(highlight=False, soft_wrap=True, width=None if sys.stdout.isatty() else 160)

ConfigOption = Annotated[
    Path | None,
    typer.Option(
        "--config", "-c", help="Config file (default: ./modelplane.yaml if present, else the embedded default)."
    ),
]
DEFAULT_CONFIG = Path("modelplane.yaml")


def home_dir() -> Path:
    """State lives under $MODELPLANE_HOME (default ./.modelplane)."""
    return Path(os.environ.get("MODELPLANE_HOME") or ".modelplane").expanduser().resolve()


def resolve_config(path: Path | None) -> Path | None:
    if path is not None:
        if path.is_dir():
            raise UsageError(f"{path} is a directory, not a config file", "pass the YAML file to --config")
        if not path.is_file():
            raise UsageError(f"config file not found: {path}", "pass an existing file to --config")
        return path
    return DEFAULT_CONFIG if DEFAULT_CONFIG.is_file() else None


def read_config(path: Path | None, *, secrets: bool = True) -> LoadedConfig:
    """The config a command reads. `secrets=False` for commands that call no provider (they read the
    ledger or the cache): an unset provider secret is then no error, so they run without it."""
    return load_config(resolve_config(path), home=home_dir(), env=dict(os.environ), secrets=secrets)


def existing_ledger(loaded: LoadedConfig) -> str:
    """The ledger a reading command (report, escalations, router --from-ledger) reads: it must exist.
    A missing SQLite file is a mistaken path or folder far more often than an empty ledger, and
    opening it would leave an empty database behind."""
    from modelplane.ledger.store import sqlite_file

    url = loaded.ledger_url()
    path = sqlite_file(url)
    if path is not None and not path.is_file():
        where = "" if loaded.config.ledger.url else " (the default, under $MODELPLANE_HOME)"
        raise UsageError(
            f"no ledger at {path}{where}",
            "nothing has been served with this config yet, or ledger.url points elsewhere "
            "(a relative SQLite path is read from the config file's folder)",
        )
    return url


@contextmanager
def writing(path: Path) -> Iterator[Path]:
    """Where a command writes an output file (--out, --junit…): its folder is created, and an
    OSError is `cannot write PATH: reason`, exit 2, like every other user error."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        yield path
    except OSError as exc:
        raise UsageError(f"cannot write {path}: {_reason(exc)}", "pass a writable path") from None


def writable_dir(path: Path) -> Path:
    """Create the folder a command will write into, before it does any long work."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"cannot write {path}: {_reason(exc)}", "pass a writable folder") from None
    if not os.access(path, os.W_OK):
        raise UsageError(f"cannot write {path}: {os.strerror(errno.EACCES)}", "pass a writable folder")
    return path


def _reason(exc: OSError) -> str:
    # mkdir of a folder that is a file says "File exists", which reads as if the output were there.
    return os.strerror(errno.ENOTDIR) if isinstance(exc, FileExistsError) else exc.strerror or str(exc)


def exits_on_error(func: Callable[P, R]) -> Callable[P, R]:
    """User errors end the command with exit 2, a one-line reason and a hint, never a traceback."""

    @wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return func(*args, **kwargs)
        except ConfigError as exc:
            err_console.print(f"[red]error:[/] {exc.source}: {len(exc.issues)} problem(s)")
            for issue in exc.issues:
                err_console.print(f"  {issue}", markup=False)
            err_console.print("hint: fix the listed paths; `modelplane config check` re-checks the file")
            raise typer.Exit(2) from None
        except UsageError as exc:
            err_console.print(f"[red]error:[/] {exc}", markup=True)
            if exc.hint:
                err_console.print(f"hint: {exc.hint}", markup=False)
            raise typer.Exit(2) from None
        except ModelplaneError as exc:
            err_console.print(f"[red]error:[/] {exc}")
            raise typer.Exit(2) from None

    return wrapper


def fail(message: str, hint: str = "") -> None:
    raise UsageError(message, hint)


def stderr_is_tty() -> bool:
    return sys.stderr.isatty()
