"""`modelplane escalations …`: the servings whose output a person has to look at."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, TypeVar

import orjson
import typer
from rich.table import Table
from rich.text import Text

from modelplane.cli.common import ConfigOption, console, existing_ledger, exits_on_error, read_config
from modelplane.errors import UsageError
from modelplane.ledger.store import LedgerStore

app = typer.Typer(help="List and resolve escalated servings (output that failed validation).", no_args_is_help=True)

T = TypeVar("T")
StatusOption = Annotated[str, typer.Option("--status", help="open, resolved or all.")]


def _with_store(url: str, use: Callable[[LedgerStore], Awaitable[T]]) -> T:
    async def run() -> T:
        store = LedgerStore.from_url(url)
        try:
            await store.open()
            return await use(store)
        finally:
            await store.close()

    return asyncio.run(run())


@app.command("list")
@exits_on_error
def list_(
    config: ConfigOption = None,
    status: StatusOption = "open",
    limit: int = typer.Option(100, min=1, help="At most this many, newest first."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """Show escalations, newest first."""
    if status not in ("open", "resolved", "all"):
        raise UsageError(f"unknown status {status!r}", "use --status open, resolved or all")
    url = existing_ledger(read_config(config, secrets=False))
    rows = _with_store(url, lambda store: store.escalations(None if status == "all" else status, limit))
    if as_json:
        typer.echo(orjson.dumps(rows, option=orjson.OPT_INDENT_2).decode())
        return
    if not rows:
        console.print(f"no {'' if status == 'all' else status + ' '}escalations")
        return
    console.print(_table(rows))


@app.command("resolve")
@exits_on_error
def resolve(
    escalation_id: str = typer.Argument(..., metavar="ID", help="The escalation to close."),
    note: str = typer.Option(..., "--note", help="What was done about it."),
    config: ConfigOption = None,
) -> None:
    """Mark an open escalation resolved, with a note saying what was done."""
    url = existing_ledger(read_config(config, secrets=False))
    if not _with_store(url, lambda store: store.resolve_escalation(escalation_id, note)):
        raise UsageError(
            f"no open escalation {escalation_id!r}", "`modelplane escalations list --status all` shows every id"
        )
    console.print(f"resolved {escalation_id}", markup=False)


def _table(rows: list[dict[str, Any]]) -> Table:
    resolved = any(row["status"] == "resolved" for row in rows)
    table = Table("id", "when", "tenant", "feature", "status", "reason", *(("resolution",) if resolved else ()))
    for row in rows:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(row["ts"]))
        cells = [row["id"], when, row["tenant"], row["feature"], row["status"], row["reason"]]
        if resolved:
            cells.append(row.get("resolution") or "")
        table.add_row(*(Text(cell) for cell in cells))  # Text: a reason like "['a', 'b']" is not markup
    return table
