"""sentence-transformers embedders (the optional extra `modelplane[st]`), imported lazily."""

from __future__ import annotations

import importlib
from typing import Any, ClassVar

import numpy as np

from modelplane.embeddings.base import Vectors, normalise
from modelplane.errors import UsageError

__all__ = ["SentenceTransformerEmbedder"]


class SentenceTransformerEmbedder:
    """A sentence-transformers model loaded from the local Hugging Face cache; never downloads."""

    DEFAULT_MODEL: ClassVar[str] = "sentence-transformers/all-MiniLM-L6-v2"

    def __init__(self, model: str = DEFAULT_MODEL) -> None:
        try:
            sentence_transformers = importlib.import_module("sentence_transformers")
        except ImportError as exc:
            raise UsageError(
                "the sentence-transformers embedder needs the 'st' extra",
                hint="pip install torch==2.13.0 (the CPU wheel) first, then pip install 'modelplane[st]'",
            ) from exc
        try:
            self._model: Any = sentence_transformers.SentenceTransformer(model, local_files_only=True)
        except OSError as exc:
            raise UsageError(
                f"sentence-transformers model {model!r} is not in the local cache",
                hint="place the model in the Hugging Face cache, or configure a local path",
            ) from exc
        self.dim = int(self._model.get_sentence_embedding_dimension())
        self.name = f"sentence-transformers/{model.rsplit('/', 1)[-1]}"

    def embed(self, texts: list[str]) -> Vectors:
        """Unit-length float32 rows, one per text."""
        if not texts:
            return np.empty((0, self.dim), np.float32)
        return normalise(self._model.encode(texts, convert_to_numpy=True, normalize_embeddings=True))
