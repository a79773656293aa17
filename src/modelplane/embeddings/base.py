"""One seam for every embedder: `embed(texts)` → float32 rows of unit length.

Local embedders (wordllama, sentence-transformers) are synchronous: a cache lookup embeds
one short question in tens of microseconds, cheaper than a thread hop, so callers embed
inline and move only large batches to a thread (`embed_async` does exactly that).
A provider's `/v1/embeddings` is a network call, so it is an `AsyncEmbedder`.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol, TypeGuard, cast, runtime_checkable

import numpy as np
import numpy.typing as npt

from modelplane.errors import ConfigError, ConfigIssue

__all__ = [
    "AsyncEmbedder",
    "EmbedCall",
    "Embedder",
    "EmbedderSpec",
    "embed_async",
    "embedder_from_config",
    "is_async",
    "normalise",
]

Vectors = npt.NDArray[np.float32]
EmbedCall = Callable[[list[str]], Awaitable[Sequence[Sequence[float]]]]
"""Posts texts to a provider's /v1/embeddings and returns one vector per text, in order."""

_INLINE_TEXTS = 32  # batches up to this size are embedded on the event loop; larger ones in a thread


@runtime_checkable
class Embedder(Protocol):
    """Synchronous embedder: one float32 row of unit length per text."""

    name: str
    dim: int

    def embed(self, texts: list[str]) -> Vectors: ...


class AsyncEmbedder(Protocol):
    """Embedder behind a network call."""

    name: str
    dim: int

    async def embed(self, texts: list[str]) -> Vectors: ...


@dataclass(frozen=True, slots=True)
class EmbedderSpec:
    """Which embedder to build: `kind`, and for it a `model` and optional `dim` (truncation)."""

    kind: Literal["wordllama", "sentence-transformers", "provider"] = "wordllama"
    model: str | None = None
    dim: int | None = None


def embedder_from_config(
    spec: EmbedderSpec | None = None, *, embed_call: EmbedCall | None = None, path: str = "embedder"
) -> Embedder | AsyncEmbedder:
    """Build the embedder a spec names; `embed_call` does the HTTP call for `kind: provider`."""
    spec = spec or EmbedderSpec()
    if spec.kind == "wordllama":
        from modelplane.embeddings.wordllama import WordLlamaEmbedder

        return WordLlamaEmbedder(dim=spec.dim or WordLlamaEmbedder.DEFAULT_DIM)
    if spec.kind == "sentence-transformers":
        from modelplane.embeddings.sentence_transformers import SentenceTransformerEmbedder

        return SentenceTransformerEmbedder(spec.model or SentenceTransformerEmbedder.DEFAULT_MODEL)
    if spec.kind == "provider":
        from modelplane.embeddings.provider import ProviderEmbedder

        if embed_call is None or spec.model is None or spec.dim is None:
            issue = ConfigIssue(path, "a provider embedder needs a model, its dim and a configured provider")
            raise ConfigError([issue])
        return ProviderEmbedder(spec.model, spec.dim, embed_call)
    raise ConfigError([ConfigIssue(f"{path}.kind", f"unknown embedder kind {spec.kind!r}")])


async def embed_async(embedder: Embedder | AsyncEmbedder, texts: list[str]) -> Vectors:
    """Embed from async code: await a network embedder, run a large local batch in a thread."""
    if is_async(embedder):
        return await embedder.embed(texts)
    local = cast(Embedder, embedder)
    if len(texts) <= _INLINE_TEXTS:
        return local.embed(texts)
    return await asyncio.to_thread(local.embed, texts)


def is_async(embedder: Embedder | AsyncEmbedder) -> TypeGuard[AsyncEmbedder]:
    """Whether `embed` must be awaited (a runtime Protocol check cannot tell the two apart)."""
    return inspect.iscoroutinefunction(embedder.embed)


def normalise(vectors: npt.ArrayLike) -> Vectors:
    """float32 rows scaled to unit length (zero rows stay zero)."""
    array = np.asarray(vectors, dtype=np.float32)
    if array.ndim == 1:
        array = array.reshape(1, -1)
    norms = np.linalg.norm(array, axis=1, keepdims=True)
    out: Vectors = np.divide(array, norms, out=np.zeros_like(array), where=norms > 0)
    return out
