"""Training a learned router: embed the prompts, fit two L2-regularised logistic regressions by Newton's method.

numpy only. The features are few (the embedding's dims plus the text features) and the
data sets small (thousands to tens of thousands of prompts), so Newton's method converges
in a handful of exact steps, with no learning rate to tune and no scikit-learn to import.

The embedding and the text features get separate penalties. On MMLU, embeddings learn
the *topic* of a prompt, which predicts well on subjects seen in training and badly on new
ones (bench/routing.py measures both); a strong penalty on them keeps what transfers.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from modelplane.embeddings.base import Embedder, EmbedderSpec
from modelplane.routing.data import Outcomes
from modelplane.routing.learned import TEXT_FEATURES, LearnedRouter, score_from_logits, text_features

__all__ = ["TrainOptions", "embed_prompts", "fit_logistic", "train_router"]

Floats = npt.NDArray[np.float64]
Progress = Callable[[int], None]
_BATCH = 256
_QUANTILES = 101


@dataclass(frozen=True, slots=True)
class TrainOptions:
    """Penalties (L2, on standardised features) for the embedding and for the text features."""

    embedding_l2: float = 3e4
    text_l2: float = 300.0
    max_steps: int = 50


def embed_prompts(embedder: Embedder, prompts: list[str], progress: Progress | None = None) -> Floats:
    """Embed in batches, calling `progress(n)` after each batch of n prompts."""
    rows = []
    for start in range(0, len(prompts), _BATCH):
        batch = prompts[start : start + _BATCH]
        rows.append(np.asarray(embedder.embed(batch), dtype=np.float64))
        if progress is not None:
            progress(len(batch))
    return np.vstack(rows) if rows else np.empty((0, embedder.dim))


def fit_logistic(z: Floats, y: Floats, penalty: Floats, max_steps: int = 50) -> Floats:
    """Weights (last one the bias, unpenalised) minimising log-loss + ½·Σ penalty·w² on features `z`."""
    design = np.hstack([z, np.ones((z.shape[0], 1))])
    ridge = np.diag(np.append(penalty, 0.0))
    w = np.zeros(design.shape[1])
    for _ in range(max_steps):
        p = 1 / (1 + np.exp(-(design @ w)))
        gradient = design.T @ (p - y) + ridge @ w
        hessian = (design * (p * (1 - p))[:, None]).T @ design + ridge + 1e-9 * np.eye(w.size)
        step = np.linalg.solve(hessian, gradient)
        w -= step
        if np.abs(step).max() < 1e-7:
            break
    return w


def train_router(
    data: Outcomes,
    vectors: npt.ArrayLike,
    *,
    embedder: str,
    embedder_spec: EmbedderSpec,
    options: TrainOptions | None = None,
    info: Mapping[str, Any] | None = None,
) -> LearnedRouter:
    """Fit a router on outcomes and their prompts' embeddings (one row per prompt, in order)."""
    options = options or TrainOptions()
    array = np.asarray(vectors, dtype=np.float64)
    if len(data) < 2 or array.shape[0] != len(data):
        raise ValueError(f"need at least 2 prompts with one vector each; got {len(data)} and {array.shape[0]}")
    dim = array.shape[1]
    extra = np.array([text_features(t) for t in data.prompts], dtype=np.float64)
    x = np.hstack([array, extra])
    mean = x.mean(axis=0)
    scale = x.std(axis=0)
    scale[scale < 1e-9] = 1.0  # a constant feature (all prompts alike in it) carries no weight either way
    z = (x - mean) / scale
    penalty = np.concatenate([np.full(dim, options.embedding_l2), np.full(len(TEXT_FEATURES), options.text_l2)])
    heads = [fit_logistic(z, y.astype(np.float64), penalty, options.max_steps) for y in (data.strong_ok, data.weak_ok)]
    weights = np.vstack([h[:-1] for h in heads])
    bias = np.array([h[-1] for h in heads])
    scores = score_from_logits(z @ weights.T + bias)  # the training prompts' own scores, from `z` already built
    quantiles = np.quantile(scores, np.linspace(0, 1, _QUANTILES))
    summary = {
        "prompts": len(data),
        "weak_accuracy": round(float(data.weak_ok.mean()), 6),
        "strong_accuracy": round(float(data.strong_ok.mean()), 6),
        "embedding_l2": options.embedding_l2,
        "text_l2": options.text_l2,
        **dict(info or {}),
    }
    return LearnedRouter(
        embedder=embedder,
        embedder_spec=embedder_spec,
        dim=dim,
        mean=mean,
        scale=scale,
        weights=weights,
        bias=bias,
        quantiles=quantiles,
        info=summary,
    )
