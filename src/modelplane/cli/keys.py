"""`modelplane keys …`: make API keys and the hashes that go into config."""

from __future__ import annotations

import secrets

import typer

from modelplane.cli.common import console
from modelplane.serving.auth import hash_key

app = typer.Typer(help="Create API keys and hash them for the config's `keys` section.", no_args_is_help=True)


@app.command("new")
def new(tenant: str = typer.Option(..., help="Tenant the key belongs to."), tier: str = "default") -> None:
    """Print a new random key and the config entry that admits it (the key itself is never stored)."""
    key = "mp-" + secrets.token_urlsafe(32)
    console.print(f"key:   {key}", markup=False)
    console.print(f'entry: - {{hash: "{hash_key(key)}", tenant: {tenant}, tier: {tier}}}', markup=False)


@app.command("hash")
def hash_(key: str = typer.Argument(..., help="The key to hash.")) -> None:
    """Print the `sha256:…` form of KEY for the config."""
    console.print(hash_key(key), markup=False)
