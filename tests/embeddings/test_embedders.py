"""The embedder seam: wordllama offline, the provider embedder, the optional sentence-transformers."""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence

import numpy as np
import pytest

from modelplane.embeddings import Embedder, EmbedderSpec, embed_async, embedder_from_config
from modelplane.embeddings.provider import ProviderEmbedder
from modelplane.errors import ConfigError, UsageError


@pytest.fixture(autouse=True)
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")


@pytest.mark.parametrize("dim", [256, 64])
def test_wordllama_embeds_unit_float32_rows_offline(dim: int) -> None:
    embedder = embedder_from_config(EmbedderSpec("wordllama", dim=dim))
    assert isinstance(embedder, Embedder)
    vectors = embedder.embed(["How do I reset my password?", "What is the capital of France?", ""])
    assert vectors.shape == (3, dim)
    assert vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors[:2], axis=1), 1.0, atol=1e-5)
    assert embedder.embed([]).shape == (0, dim)


def test_wordllama_ranks_a_paraphrase_above_an_unrelated_question() -> None:
    embedder = embedder_from_config()
    assert isinstance(embedder, Embedder)
    a, b, c = embedder.embed(["How do I reset my password?", "How can I reset my password?", "Best pizza in Rome?"])
    assert float(a @ b) > float(a @ c) + 0.2


def test_wordllama_rejects_an_unshipped_dim() -> None:
    with pytest.raises(ValueError, match="dim"):
        embedder_from_config(EmbedderSpec("wordllama", dim=1024))


async def test_provider_embedder_normalises_and_checks_shape() -> None:
    async def call(texts: list[str]) -> Sequence[Sequence[float]]:
        return [[3.0, 4.0] for _ in texts]

    embedder = embedder_from_config(EmbedderSpec("provider", model="text-embedding-3-small", dim=2), embed_call=call)
    assert isinstance(embedder, ProviderEmbedder)
    vectors = await embed_async(embedder, ["a", "b"])
    assert np.allclose(vectors, [[0.6, 0.8], [0.6, 0.8]])

    wrong = ProviderEmbedder("m", 3, call)
    with pytest.raises(ValueError, match="shape"):
        await wrong.embed(["a"])


def test_provider_embedder_needs_a_call() -> None:
    with pytest.raises(ConfigError, match="provider"):
        embedder_from_config(EmbedderSpec("provider", model="m", dim=2))


async def test_embed_async_runs_local_embedders() -> None:
    embedder = embedder_from_config()
    vectors = await embed_async(embedder, [f"question {i}" for i in range(40)])  # large: in a thread
    assert vectors.shape == (40, 256)


@pytest.mark.skipif(importlib.util.find_spec("sentence_transformers") is not None, reason="the st extra is installed")
def test_sentence_transformers_without_the_extra_says_how_to_install() -> None:
    with pytest.raises(UsageError) as info:
        embedder_from_config(EmbedderSpec("sentence-transformers"))
    assert "modelplane[st]" in info.value.hint


@pytest.mark.skipif(importlib.util.find_spec("sentence_transformers") is None, reason="needs the st extra")
def test_sentence_transformers_embeds_unit_rows_when_installed() -> None:
    try:
        embedder = embedder_from_config(EmbedderSpec("sentence-transformers"))
    except UsageError as exc:  # the extra is installed but the model is not cached on this machine
        pytest.skip(str(exc))
    assert isinstance(embedder, Embedder)
    vectors = embedder.embed(["hello", "world"])
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
