"""Training a learned router: a difficulty model by Newton's method, then the strong model's gain along it.

numpy only. The features are few (the embedding's dims plus the text features) and the
data sets small (thousands to tens of thousands of prompts), so Newton's method converges
in a handful of exact steps, with no learning rate to tune and no scikit-learn to import.

1. The difficulty model: one L2-regularised logistic regression on both models' outcomes
   stacked (each prompt twice, with a strong-model intercept), so the weights are shared.
2. Cross-fitting: the training prompts are split into `inner_folds` parts (by group — a CSV
   file, a ledger feature — when there are enough groups and none holds half the prompts,
   else at random); each part is ranked by a difficulty model fitted on the others. These
   out-of-group ranks are what a new prompt's rank looks like; in-sample ranks would be
   overconfident. They also give the score quantiles a threshold is picked from.
3. The gain curve: the strong model's gain (strong ok - weak ok) smoothed over those ranks
   by a Gaussian kernel; its width is picked from `bandwidths` by the same parts (curve from
   all parts but one, routing quality — area under the accuracy curve — on that one).
4. The final difficulty model is fitted on every training prompt; its quantiles on them map
   a new prompt's index to its rank.

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
from modelplane.routing.learned import (
    CURVE_POINTS,
    TEXT_FEATURES,
    LearnedRouter,
    gain_on_grid,
    rank_in,
    text_features,
)

__all__ = ["TrainOptions", "embed_prompts", "fit_logistic", "train_router"]

Floats = npt.NDArray[np.float64]
Bools = npt.NDArray[np.bool_]
Progress = Callable[[int], None]
_BATCH = 256
_QUANTILES = 101
_LEVELS = 1001
_MIN_KERNEL_PROMPTS = 30
_MAX_KERNEL_FLOOR = 0.3  # under ~40 prompts: still a trend, not a flat line
_INTERCEPT_L2 = 1.0
_GRID = np.linspace(0.0, 1.0, CURVE_POINTS)


@dataclass(frozen=True, slots=True)
class TrainOptions:
    """Penalties (L2, on standardised features, per model's outcomes) for the embedding and the text
    features; the cross-fitting parts and the kernel widths (in ranks, 0-1) the gain curve may take."""

    embedding_l2: float = 3e4
    text_l2: float = 300.0
    max_steps: int = 50
    inner_folds: int = 4
    bandwidths: tuple[float, ...] = (0.01, 0.02, 0.03, 0.05, 0.08, 0.12)
    seed: int = 0


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


def fit_difficulty(z: Floats, strong_ok: Bools, weak_ok: Bools, penalty: Floats, max_steps: int = 50) -> Floats:
    """Weights over `z` and then (strong, weak) intercepts of one logistic model of both models' outcomes."""
    n = z.shape[0]
    design = np.hstack([np.vstack([z, z]), np.concatenate([np.ones(n), np.zeros(n)])[:, None]])
    outcomes = np.concatenate([strong_ok, weak_ok]).astype(np.float64)
    # Each prompt counts twice, so the penalty doubles to stay "per model's outcomes". The strong model's
    # intercept gets a token penalty: were it always right (a judge grading against its answer), it would diverge.
    w = fit_logistic(design, outcomes, np.append(2 * penalty, _INTERCEPT_L2), max_steps)
    weak_intercept = w[-1]
    out: Floats = np.concatenate([w[:-2], [w[-2] + weak_intercept, weak_intercept]])
    return out


def routed_accuracy_area(scores: Floats, weak_ok: Bools, strong_ok: Bools) -> float:
    """Mean accuracy over every share of strong calls, routing the highest scores first (ties in order)."""
    order = np.argsort(-scores, kind="stable")
    gained = np.cumsum(strong_ok[order].astype(np.float64) - weak_ok[order])
    accuracy = (weak_ok.sum() + np.concatenate([[0.0], gained])) / max(scores.size, 1)
    return float((accuracy[1:] + accuracy[:-1]).mean() / 2) if scores.size else 0.0


def _parts(data: Outcomes, k: int, seed: int) -> tuple[npt.NDArray[np.intp], bool]:
    """Each prompt's cross-fitting part, and whether the parts are whole groups.

    Whole groups (shuffled, then dealt largest first to the smallest part) when there are at
    least k of them and none holds over half the prompts; else prompts at random.
    """
    rng = np.random.default_rng(seed)
    sizes: dict[str, int] = {}
    for group in data.groups:
        sizes[group] = sizes.get(group, 0) + 1
    if len(sizes) >= k and max(sizes.values()) <= len(data) / 2:
        names = list(sizes)
        shuffled = [names[i] for i in rng.permutation(len(names))]
        totals = [0] * k
        part: dict[str, int] = {}
        for group in sorted(shuffled, key=lambda g: -sizes[g]):  # stable: ties keep the shuffled order
            part[group] = totals.index(min(totals))
            totals[part[group]] += sizes[group]
        return np.array([part[g] for g in data.groups], dtype=np.intp), True
    out: npt.NDArray[np.intp] = rng.permutation(len(data)) % k
    return out, False


def train_router(
    data: Outcomes,
    vectors: npt.ArrayLike,
    *,
    embedder: str,
    embedder_spec: EmbedderSpec,
    options: TrainOptions | None = None,
    info: Mapping[str, Any] | None = None,
    progress: Progress | None = None,
) -> LearnedRouter:
    """Fit a router on outcomes and their prompts' embeddings (one row per prompt, in order).

    `progress(1)` is called after each of the `inner_folds + 1` difficulty models.
    """
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
    strong, weak = data.strong_ok, data.weak_ok
    gains = strong.astype(np.float64) - weak

    def fit(rows: Bools) -> tuple[Floats, Floats]:
        """A difficulty model on `rows`: its weights and intercepts, and its quantiles on those rows."""
        w = fit_difficulty(z[rows], strong[rows], weak[rows], penalty, options.max_steps)
        if progress is not None:
            progress(1)
        return w, np.quantile(z[rows] @ w[:-2], np.linspace(0, 1, _LEVELS))

    k = max(2, min(options.inner_folds, len(data)))
    part, by_group = _parts(data, k, options.seed)
    ranks = np.zeros(len(data))
    for j in range(k):
        held = part == j
        w, levels = fit(~held)
        ranks[held] = rank_in(z[held] @ w[:-2], levels)
    # A kernel narrower than ~30 prompts' worth of ranks follows single outcomes, not a trend.
    floor = min(_MIN_KERNEL_PROMPTS / 2.5 / len(data), _MAX_KERNEL_FLOOR)
    widths = tuple(sorted({max(b, floor) for b in options.bandwidths}))
    bandwidth = _pick_bandwidth(ranks, gains, part, k, data, widths)
    curve = np.clip(gain_on_grid(ranks, gains, bandwidth), -1.0, 1.0)
    w, levels = fit(np.ones(len(data), dtype=bool))
    weights, intercepts = w[:-2], w[-2:]
    # The training prompts' scores from their cross-fitted ranks: how a threshold splits prompts the router
    # has not seen (in-sample ranks would be spread more evenly than new prompts' are).
    scores = (1 + np.interp(ranks, _GRID, curve)) / 2
    summary = {
        "prompts": len(data),
        "weak_accuracy": round(float(weak.mean()), 6),
        "strong_accuracy": round(float(strong.mean()), 6),
        "embedding_l2": options.embedding_l2,
        "text_l2": options.text_l2,
        "bandwidth": bandwidth,
        "cross_fitting": f"{k} parts by {'group' if by_group else 'prompt'}",
        **dict(info or {}),
    }
    return LearnedRouter(
        embedder=embedder,
        embedder_spec=embedder_spec,
        dim=dim,
        mean=mean,
        scale=scale,
        weights=weights,
        intercepts=intercepts,
        levels=levels,
        curve=curve,
        quantiles=np.quantile(scores, np.linspace(0, 1, _QUANTILES)),
        info=summary,
    )


def _pick_bandwidth(
    ranks: Floats, gains: Floats, part: npt.NDArray[np.intp], k: int, data: Outcomes, bandwidths: tuple[float, ...]
) -> float:
    """The kernel width whose curve, fitted on all parts but one, routes the left-out parts best (summed)."""
    if len(bandwidths) == 1:
        return bandwidths[0]
    best: tuple[float, float] | None = None
    for bandwidth in bandwidths:
        total = 0.0
        for j in range(k):
            held = part == j
            if not held.any() or held.all():
                continue
            curve = gain_on_grid(ranks[~held], gains[~held], bandwidth)
            scores = np.interp(ranks[held], _GRID, curve)
            total += held.sum() * routed_accuracy_area(scores, data.weak_ok[held], data.strong_ok[held])
        if best is None or total > best[0] + 1e-12:
            best = (total, bandwidth)
    assert best is not None
    return best[1]
