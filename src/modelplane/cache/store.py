"""The seam between the in-process response cache and where its entries persist or are shared.

Lookups never leave the process: every gateway keeps its entries in memory (an LRU map for
exact keys, a vector index for semantic ones). A `CacheStore` is what lies behind that
memory: SQLite under $MODELPLANE_HOME (entries survive a restart) or Redis (workers share
them). It writes behind the request path, loads what survives when the gateway starts, and
follows what other processes store or purge, handing each change to the cache's `apply`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal, Protocol

import orjson

__all__ = ["CacheStore", "FeatureUsage", "Purge", "StoredEntry", "owned_by"]

SEP = "\x1f"  # between tenant, feature and digest in an exact key or a semantic partition


@dataclass(frozen=True, slots=True)
class StoredEntry:
    """One cached answer as it is persisted: exact (under `key`) or semantic (in partition `key`)."""

    kind: Literal["exact", "semantic"]
    key: str  # "tenant␟feature␟digest": an exact key, or a semantic partition
    body: bytes  # the chat.completion as JSON
    cost_usd: float | None
    model: str
    expires_at: float  # unix seconds
    question: str | None = None  # semantic: the last user turn that was embedded
    vector: bytes | None = None  # semantic: its float32 embedding
    embedder: str | None = None  # semantic: which embedder made the vector (others' vectors are not comparable)

    @property
    def tenant(self) -> str:
        return self.key.split(SEP, 1)[0]

    @property
    def feature(self) -> str:
        return self.key.split(SEP, 2)[1]

    @property
    def size(self) -> int:
        """Bytes it is charged for in a store's bound."""
        return len(self.body) + len(self.vector or b"") + len((self.question or "").encode()) + 200

    def meta(self) -> bytes:
        """Everything but the body and the vector, as JSON."""
        return orjson.dumps(
            {
                "kind": self.kind,
                "key": self.key,
                "cost_usd": self.cost_usd,
                "model": self.model,
                "expires_at": self.expires_at,
                "question": self.question,
                "embedder": self.embedder,
            }
        )

    @classmethod
    def from_meta(cls, meta: bytes, body: bytes, vector: bytes | None = None) -> StoredEntry:
        data = orjson.loads(meta)
        return cls(
            data["kind"],
            data["key"],
            body,
            data["cost_usd"],
            data["model"],
            data["expires_at"],
            data.get("question"),
            vector or None,
            data.get("embedder"),
        )


@dataclass(frozen=True, slots=True)
class Purge:
    """Entries of a tenant and/or a feature were dropped (all of them when both are None)."""

    tenant: str | None = None
    feature: str | None = None


@dataclass(slots=True)
class FeatureUsage:
    """What one feature holds in a cache."""

    feature: str
    entries: int = 0
    bytes: int = 0
    by_kind: dict[str, int] = field(default_factory=dict)


Change = StoredEntry | Purge
Apply = Callable[[Change], None]


class CacheStore(Protocol):
    """Where cache entries persist or are shared. Writes are queued and never wait on the caller."""

    name: str

    async def start(self, apply: Apply) -> None:
        """Hand `apply` every entry that is still valid, then keep handing it other processes' changes."""

    def put(self, entry: StoredEntry) -> None:
        """Queue an entry for writing."""

    async def get_exact(self, key: str) -> StoredEntry | None:
        """An exact entry this process has not seen yet (another worker stored it a moment ago), if any."""

    async def purge(self, tenant: str | None, feature: str | None) -> int:
        """Drop matching entries everywhere; returns how many the store held."""

    async def usage(self) -> list[FeatureUsage]:
        """Entries and bytes per feature, as the store holds them."""

    async def aclose(self) -> None:
        """Write what is queued, stop following, close."""


def owned_by(key: str, tenant: str | None, feature: str | None) -> bool:
    """Whether an exact key or a partition belongs to `tenant` and `feature` (None matches any)."""
    key_tenant, key_feature, _ = key.split(SEP, 2)
    return tenant in (None, key_tenant) and feature in (None, key_feature)
