"""`modelplane keys …`: make API keys and the hashes that go into config."""

from __future__ import annotations

import json
import re
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
    entry = f'- {{hash: "{hash_key(key)}", tenant: {_yaml_text(tenant)}, tier: {_yaml_text(tier)}}}'
    console.print(f"entry: {entry}", markup=False)


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


_PLAIN = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]*")
_YAML_WORDS = frozenset(["true", "false", "yes", "no", "on", "off", "null", "y", "n", "~"])


def _yaml_text(value: str) -> str:
    """`value` as YAML reads it back: plain when it is a simple name, else a quoted string (a tenant
    called `acme, inc: eu` or `no` must not break the entry or turn into something else)."""
    if _PLAIN.fullmatch(value) and value.lower() not in _YAML_WORDS:
        return value
    return json.dumps(value, ensure_ascii=False)
