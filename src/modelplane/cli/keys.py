"""`modelplane keys …`: make API keys and the hashes that go into config."""

from __future__ import annotations

import secrets

import typer

from modelplane.cli.common import ConfigOption, console, exits_on_error, read_config
from modelplane.errors import UsageError
from modelplane.serving.auth import hash_key

app = typer.Typer(help="Create API keys and hash them for the config's `keys` section.", no_args_is_help=True)


@app.command("new")
@exits_on_error
def new(
    tenant: str = typer.Option(..., help="Tenant the key belongs to."),
    tier: str | None = typer.Option(
        None, help="One of the config's tiers: required when it has several; default: its only tier."
    ),
    config: ConfigOption = None,
) -> None:
    """Print a new random key and the config entry that admits it (the key itself is never stored)."""
    tier = _tier(tier, list(read_config(config, secrets=False).config.tiers))
    key = "mp-" + secrets.token_urlsafe(32)
    console.print(f"key:   {key}", markup=False)
    console.print(f'entry: - {{hash: "{hash_key(key)}", tenant: {tenant}, tier: {tier}}}', markup=False)


def _tier(tier: str | None, tiers: list[str]) -> str:
    """The key's tier: one the config declares (`config check` refuses any other)."""
    if tier is None and len(tiers) == 1:
        return tiers[0]
    known = ", ".join(tiers) or "none"
    if tier is None:
        raise UsageError(f"the config has several tiers ({known}): which one is the key's?", "pass --tier NAME")
    if tier not in tiers:
        raise UsageError(f"unknown tier {tier!r} (the config's tiers: {known})", "pass --tier NAME")
    return tier


@app.command("hash")
def hash_(key: str = typer.Argument(..., help="The key to hash.")) -> None:
    """Print the `sha256:…` form of KEY for the config."""
    console.print(hash_key(key), markup=False)
