"""Embeddings from a configured provider's `/v1/embeddings`, through a call the gateway supplies."""

from __future__ import annotations

import numpy as np

from modelplane.embeddings.base import EmbedCall, Vectors, normalise

__all__ = ["ProviderEmbedder"]


class ProviderEmbedder:
    """An `AsyncEmbedder` over any OpenAI-compatible embeddings endpoint.

    It knows nothing of HTTP: `call` posts the texts (with the provider's base URL, key and
    resilience) and returns one vector per text, so this stays free of gateway internals.
    `dim` 0 means "learn it from the first answer"; every later answer must match it.
    """

    def __init__(self, model: str, dim: int, call: EmbedCall) -> None:
        self.name = f"provider/{model}"
        self.dim = dim
        self._call = call

    async def embed(self, texts: list[str]) -> Vectors:
        """Unit-length float32 rows, one per text; a wrong count or width is an error, not a silent miss."""
        if not texts:
            return np.empty((0, self.dim), np.float32)
        vectors = normalise(await self._call(texts))
        if self.dim == 0 and vectors.ndim == 2 and vectors.shape[1] > 0:
            self.dim = int(vectors.shape[1])
        if vectors.shape != (len(texts), self.dim) or self.dim == 0:
            raise ValueError(f"{self.name} returned shape {vectors.shape}, expected {(len(texts), self.dim)}")
        return vectors
