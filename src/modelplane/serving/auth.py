"""Stage 1, authenticate: an API key becomes a caller (tenant, tier)."""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass

from modelplane.config.schema import LOCAL_TENANT
from modelplane.errors import Forbidden, Unauthorized
from modelplane.serving.runtime import Runtime

DEFAULT_TIER = "default"


@dataclass(frozen=True, slots=True)
class Caller:
    tenant: str
    tier: str
    admin: bool = False
    key_name: str = ""
    key: str = ""  # the key's sha256 hex digest, which rate limits count by; "" for open access


OPEN_CALLER = Caller(LOCAL_TENANT, DEFAULT_TIER, admin=True, key_name="open-access")


def hash_key(key: str) -> str:
    """The form a key is stored in config: `sha256:<hex>`."""
    return "sha256:" + hashlib.sha256(key.encode()).hexdigest()


def authenticate(runtime: Runtime, authorization: str | None) -> Caller:
    """Resolve `Authorization: Bearer KEY`. With no keys configured, everyone is the local tenant."""
    if runtime.open_access:
        return OPEN_CALLER
    if not authorization:
        raise Unauthorized("missing API key: send `Authorization: Bearer <key>`")
    scheme, _, key = authorization.partition(" ")
    if scheme.lower() != "bearer" or not key.strip():
        raise Unauthorized("malformed Authorization header: expected `Bearer <key>`")
    digest = hashlib.sha256(key.strip().encode()).hexdigest()
    entry = runtime.keys.get(digest)
    # The lookup is by digest, so timing reveals nothing about the key; compare anyway to keep it obvious.
    if entry is None or not hmac.compare_digest(entry.hash.removeprefix("sha256:"), digest):
        raise Unauthorized("invalid API key")
    return Caller(entry.tenant, entry.tier, entry.admin, entry.name, digest)


def require_admin(runtime: Runtime, authorization: str | None) -> Caller:
    """The caller, if it holds an admin key (every caller does when no keys are configured).

    No key or an unknown one is a 401; a valid key without the admin role is a 403.
    """
    caller = authenticate(runtime, authorization)
    if not caller.admin:
        named = f"'{caller.key_name}', " if caller.key_name else ""
        raise Forbidden(
            f"this endpoint needs an admin key; the key given ({named}tenant '{caller.tenant}') is valid "
            "but not an admin key (`admin: true` in its `keys` entry)",
            code="admin_key_required",
        )
    return caller
