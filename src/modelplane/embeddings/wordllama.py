"""The default embedder: WordLlama, whose weights ship inside its wheel (nothing downloads).

WordLlama averages static token embeddings distilled from large LLMs, so one short question
embeds in about 40 µs on one CPU core — cheaper than any network hop. The shipped model is
`l2_supercat` at 256 dimensions; it is matryoshka-trained, so `dim` may truncate it to
64 or 128 (smaller index, slightly less separation). 256 is the default: on the
benchmark it separates paraphrases as well as the truncations at a slightly higher
threshold, keeps more Quora precision at the top, and the index's 64-dim prefilter
already gives the search the speed of the small vectors (see bench/README.md).
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import ClassVar

import numpy as np

from modelplane.embeddings.base import Vectors, normalise

__all__ = ["WordLlamaEmbedder"]


class WordLlamaEmbedder:
    """wordllama `l2_supercat`, loaded once per instance from the installed package."""

    DEFAULT_DIM: ClassVar[int] = 256
    DIMS: ClassVar[tuple[int, ...]] = (64, 128, 256)

    def __init__(self, dim: int = DEFAULT_DIM) -> None:
        if dim not in self.DIMS:
            raise ValueError(f"wordllama dim must be one of {self.DIMS}, not {dim}")
        wordllama = importlib.import_module("wordllama")  # untyped; imported here so the module loads lazily
        # The wheel holds the weights and tokenizer, but load() looks for the tokenizer under
        # cache_dir and would download it otherwise: point cache_dir at the package itself.
        package = Path(str(wordllama.__file__)).parent
        self._model = wordllama.WordLlama.load(
            cache_dir=package, disable_download=True, trunc_dim=None if dim == 256 else dim
        )
        self.dim = dim
        self.name = f"wordllama/l2_supercat-{dim}"

    def embed(self, texts: list[str]) -> Vectors:
        """Unit-length float32 rows, one per text."""
        if not texts:
            return np.empty((0, self.dim), np.float32)
        return normalise(self._model.embed(texts, norm=False))
