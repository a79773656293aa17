"""The embedder seam: turn texts into unit vectors (wordllama by default)."""

from modelplane.embeddings.base import AsyncEmbedder, Embedder, EmbedderSpec, embed_async, embedder_from_config

__all__ = ["AsyncEmbedder", "Embedder", "EmbedderSpec", "embed_async", "embedder_from_config"]
