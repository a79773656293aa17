"""The learned router: from a prompt's embedding and a few cheap text features, how much the strong model gains.

A router has two parts (numpy only; fitted by train.py):

1. A **difficulty model**: one logistic regression over the features, fitted on *both*
   models' outcomes at once (one intercept per model, the weights shared), so it learns how
   hard a prompt is from twice the labels. A prompt's difficulty index is its linear score.
2. A **gain curve**: the measured gain of the strong model (strong ok - weak ok, in -1..1) as
   a function of where a prompt's difficulty falls among the training prompts (its rank,
   0 = hardest, 1 = easiest). It is estimated on cross-fitted ranks (each training prompt
   ranked by a difficulty model that did not see its group) and smoothed with a Gaussian
   kernel whose width is picked by validation inside the training data.

The score is (1 + gain) / 2, in [0, 1]: above 0.5 the strong model is expected to do better.
The curve is what makes the router work on prompts unlike its training data: the strong
model gains most on prompts of middling-to-high difficulty, little on easy ones (both
answer) and nothing on the hardest (both fail), and a monotone "harder → strong" rule sends
the hopeless prompts to the expensive model for nothing. On RouteLLM's MMLU outcomes, with
whole subjects held out, this shape transfers; the subject-specific direction of two
independent per-model heads (format 2) did not (bench/routing.py, bench/README.md).

It is kept in one small JSON file that a feature's route config points to. The file carries
a format version, the embedder it was trained with (name, kind, dim: vectors from another
embedder mean nothing to it), the text features in order, the standardisation and the
weights, the training prompts' difficulty quantiles and the gain curve, and the quantiles of
its scores on the training prompts, so a threshold can be picked by the share of calls it
sends to the strong model. Never a pickle: loading a router file runs no code.

A decision is one dot product and two table look-ups after embedding (a few µs): route to
the strong model iff `score(text, vector) >= threshold`; the threshold lives in the route config.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from modelplane.embeddings.base import EmbedderSpec
from modelplane.errors import ConfigError, ConfigIssue

__all__ = ["FORMAT", "FORMAT_VERSION", "TEXT_FEATURES", "LearnedRouter", "gain_on_grid", "rank_in", "text_features"]

Floats = npt.NDArray[np.float64]
FORMAT = "modelplane-router"
CURVE_POINTS = 201  # the gain curve, at ranks 0, 0.005, ..., 1
FORMAT_VERSION = 3  # 1: 16 text features; 2: two per-model heads (read no more: retrain)
TARGET = "gain_over_difficulty"  # one difficulty model, the strong model's gain along its ranks
_RETIRED = {
    1: "router format version 1 (16 text features)",
    2: "router format version 2 (two per-model heads, no gain curve)",
}

# Character classes for the text features, looked up per UTF-8 byte (bytes >= 128 are non-ASCII).
_OTHER, _DIGIT, _UPPER, _MATH, _NEWLINE, _NON_ASCII = range(6)
_CLASSES = np.full(256, _OTHER, dtype=np.intp)
_CLASSES[ord("0") : ord("9") + 1] = _DIGIT
_CLASSES[ord("A") : ord("Z") + 1] = _UPPER
_CLASSES[[ord(c) for c in "=+-*/^<>()[]{}|\\$%_~"]] = _MATH
_CLASSES[ord("\n")] = _NEWLINE
_CLASSES[128:] = _NON_ASCII

TEXT_FEATURES = (
    "log_chars",
    "log_words",
    "log_lines",
    "digit_share",
    "upper_share",
    "math_share",
    "non_ascii_share",
    "mean_word_length",
    "negation",
    "log_numbers",
    "question_mark",
    "log_sentences",
    "log_choices",
    "log_choice_chars",
    "choice_spread",
    "stem_share",
    # Added in format version 2: the shape of the question and its options (see `_shape_features`).
    "which_of_the_following",
    "log_negations",
    "all_or_none_option",
    "log_roman_statements",
    "statement_pair",
    "calculation_cue",
    "log_years",
    "blank",
    "log_quotes",
    "capitalised_share",
    "numeric_option_share",
    "option_overlap",
    "options_to_stem",
    "log_option_words",
    "log_stem_words",
    "log_stem_lines",
    "option_length_range",
    "longest_option_position",
    "option_digit_share",
    "distinct_word_share",
    "long_word_share",
)
_NEGATION = re.compile(r"\b(?:EXCEPT|NOT|LEAST|FALSE)\b")
_NUMBER = re.compile(r"\d+(?:[.,]\d+)?")
_CHOICE = re.compile(r"^\s*\(?[A-Ha-h][.)]\s*(.*)$", re.MULTILINE)
_WORD = re.compile(r"[A-Za-z]+")
_WHICH = re.compile(r"which of the following", re.IGNORECASE)
_ANY_NEGATION = re.compile(r"\b(?:not|except|least|false|incorrect|never|cannot|untrue)\b", re.IGNORECASE)
_ALL_OR_NONE = re.compile(r"\b(?:all of the above|none of the above|all of these|none of these|both|neither)\b", re.I)
_ROMAN = re.compile(r"^\s*(?:I|II|III|IV)\.", re.MULTILINE)
_STATEMENT = re.compile(r"\bStatement \d", re.IGNORECASE)
_CALCULATION = re.compile(
    r"\b(?:calculate|compute|find|how many|how much|what is the value|solve|evaluate|probability|expected)\b", re.I
)
_YEAR = re.compile(r"\b(?:1[5-9]\d\d|20\d\d)\b")
_BLANK = re.compile(r"_{2,}")
_QUOTE = re.compile(r"[\"“”]")
_CAPITALISED = re.compile(r"(?<![.!?]\s)(?<!^)\b[A-Z][a-z]+")


def text_features(text: str) -> list[float]:
    """The cheap text features of one prompt, in the order of TEXT_FEATURES.

    Besides size and character mix: negations in capitals ("all of these EXCEPT"), how many
    numbers it holds, and, for multiple-choice prompts, how many choices and how long — the
    shape of a question says something of how much reasoning it takes, whatever its topic.
    """
    raw = text.encode("utf-8", "replace")
    counts = np.bincount(_CLASSES[np.frombuffer(raw, dtype=np.uint8)], minlength=6) if raw else np.zeros(6)
    size = max(len(raw), 1)
    words = len(text.split())
    choices = [len(c) for c in _CHOICE.findall(text)]
    first = _CHOICE.search(text)
    stem = first.start() if first else len(text)
    mean_choice = sum(choices) / len(choices) if choices else 0.0
    spread = (max(choices) - min(choices)) / (mean_choice + 1) if choices else 0.0
    return [
        math.log1p(len(text)),
        math.log1p(words),
        math.log1p(int(counts[_NEWLINE])),
        counts[_DIGIT] / size,
        counts[_UPPER] / size,
        counts[_MATH] / size,
        counts[_NON_ASCII] / size,
        len(text) / max(words, 1) / 10,
        float(_NEGATION.search(text) is not None),
        math.log1p(len(_NUMBER.findall(text))),
        float("?" in text[:stem]),
        math.log1p(text.count(". ") + text.count("? ")),
        math.log1p(len(choices)),
        math.log1p(mean_choice),
        spread,
        stem / max(len(text), 1),
        *_shape_features(text, text[:stem], _CHOICE.findall(text)),
    ]


def _shape_features(text: str, stem: str, options: list[str]) -> list[float]:
    """How the question is put and what its options look like, whatever the subject (format version 2).

    Measured on RouteLLM's MMLU outcomes with whole subjects held out (bench/routing.py),
    these carry more of the signal that transfers to new subjects than the embedding does:
    "which of the following" and "all/none of the above" questions, calculations, numeric
    or look-alike options, how long the options are against the stem, and where the
    longest option sits (the strong model gains more when it is a later one).
    """
    words = _WORD.findall(text)
    n_words = max(len(words), 1)
    lengths = [len(o) for o in options] or [0]
    total = max(sum(lengths), 1)
    sets = [{w.lower() for w in _WORD.findall(o)} for o in options]
    pairs = [(a, b) for i, a in enumerate(sets) for b in sets[i + 1 :]]
    overlap = sum(len(a & b) / max(len(a | b), 1) for a, b in pairs) / len(pairs) if pairs else 0.0
    # An option is numeric when it holds a digit and letters make up less than half of it.
    numeric = sum(sum(map(str.isalpha, o)) < 0.5 * max(len(o), 1) and any(map(str.isdigit, o)) for o in options)
    longest = max(range(len(lengths)), key=lengths.__getitem__)
    return [
        float(_WHICH.search(stem) is not None),
        math.log1p(len(_ANY_NEGATION.findall(stem))),
        float(any(_ALL_OR_NONE.search(o) for o in options)),
        math.log1p(len(_ROMAN.findall(text))),
        float(_STATEMENT.search(stem) is not None),
        float(_CALCULATION.search(stem) is not None),
        math.log1p(len(_YEAR.findall(text))),
        float(_BLANK.search(text) is not None),
        math.log1p(len(_QUOTE.findall(text))),
        len(_CAPITALISED.findall(text)) / n_words,
        numeric / len(options) if options else 0.0,
        overlap,
        math.log1p(sum(lengths)) - math.log1p(len(stem)),
        math.log1p(sum(len(s) for s in sets) / len(sets)) if sets else 0.0,
        math.log1p(len(_WORD.findall(stem))),
        math.log1p(stem.count("\n")),
        math.log1p(max(lengths)) - math.log1p(min(lengths)),
        longest / (len(lengths) - 1) if len(lengths) > 1 else 0.0,
        sum(c.isdigit() for o in options for c in o) / total,
        len({w.lower() for w in words}) / n_words,
        sum(len(w) >= 9 for w in words) / n_words,
    ]


def gain_on_grid(ranks: Floats, gains: Floats, bandwidth: float, points: int = CURVE_POINTS) -> Floats:
    """The kernel-smoothed gain at `points` evenly spaced ranks in [0, 1] (Nadaraya-Watson, Gaussian kernel)."""
    grid = np.linspace(0.0, 1.0, points)
    weights = np.exp(-0.5 * ((grid[:, None] - ranks[None, :]) / bandwidth) ** 2)
    total = weights.sum(axis=1)
    mean = float(gains.mean()) if gains.size else 0.0
    out: Floats = np.where(total > 1e-12, weights @ gains / np.maximum(total, 1e-12), mean)
    return out


def rank_in(values: Floats, levels: Floats) -> Floats:
    """Where each value falls in a sorted sample's quantiles `levels` (evenly spaced), as a rank in [0, 1].

    A value equal to a run of tied levels (many prompts alike) gets the middle of the run.
    """
    grid = np.linspace(0.0, 1.0, levels.size)
    upper = np.interp(values, levels, grid)  # np.interp takes the last of tied sample points
    lower = 1.0 - np.interp(-values, -levels[::-1], grid)  # ... so, mirrored, the first
    out: Floats = (upper + lower) / 2
    return out


class LearnedRouter:
    """A trained router: `score` says how much one prompt needs the strong model (see the module docstring).

    `weights` is the difficulty model's weights over the (standardised) features and
    `intercepts` its (strong, weak) intercepts; `levels` the training prompts' difficulty
    quantiles (evenly spaced, ascending); `curve` the gain at evenly spaced ranks 0..1.
    """

    def __init__(
        self,
        *,
        embedder: str,
        embedder_spec: EmbedderSpec,
        dim: int,
        mean: Floats,
        scale: Floats,
        weights: Floats,
        intercepts: Floats,
        levels: Floats,
        curve: Floats,
        quantiles: Floats,
        info: Mapping[str, Any] | None = None,
    ) -> None:
        width = dim + len(TEXT_FEATURES)
        if not (mean.shape == scale.shape == weights.shape == (width,) and intercepts.shape == (2,)):
            raise ValueError(f"a router over {dim}-dim vectors needs {width} means, scales and weights, 2 intercepts")
        if not all(np.isfinite(a).all() for a in (mean, scale, weights, intercepts, levels, curve, quantiles)):
            raise ValueError("non-finite numbers")
        if (scale <= 0).any():
            raise ValueError("a feature's scale is not positive")
        for name, array in (("difficulty levels", levels), ("score quantiles", quantiles)):
            if array.ndim != 1 or array.size < 2 or (np.diff(array) < 0).any():
                raise ValueError(f"the {name} must be at least 2 ascending numbers")
        if curve.ndim != 1 or curve.size < 2 or (np.abs(curve) > 1).any():
            raise ValueError("the gain curve must be at least 2 numbers in [-1, 1]")
        self.embedder = embedder
        self.embedder_spec = embedder_spec
        self.dim = dim
        self.mean, self.scale, self.weights, self.intercepts = mean, scale, weights, intercepts
        self.levels, self.curve, self.quantiles = levels, curve, quantiles
        self.info: dict[str, Any] = dict(info or {})
        # Folding the standardisation into the weights makes the difficulty index one dot product.
        self._w: Floats = weights / scale
        self._b = float(-weights @ (mean / scale))
        self._grid: Floats = np.linspace(0.0, 1.0, curve.size)
        self._text = self._to_text()
        self.version = hashlib.sha256(self._text.encode()).hexdigest()[:16]

    # -- decisions -------------------------------------------------------------------------

    def features(self, texts: list[str], vectors: npt.ArrayLike) -> Floats:
        """One row per prompt: its embedding, then its text features (unstandardised)."""
        array = np.asarray(vectors, dtype=np.float64)
        if array.ndim == 1:
            array = array.reshape(1, -1)
        if array.shape != (len(texts), self.dim):
            raise ValueError(
                f"router {self.version} takes one {self.dim}-dim {self.embedder} vector per text; "
                f"got {array.shape[0]}x{array.shape[1] if array.ndim > 1 else 0} for {len(texts)} text(s)"
            )
        extra = np.array([text_features(t) for t in texts], dtype=np.float64).reshape(len(texts), -1)
        return np.hstack([array, extra])

    def difficulty_rank(self, texts: list[str], vectors: npt.ArrayLike) -> Floats:
        """Each prompt's rank among the training prompts by predicted ease: 0 the hardest, 1 the easiest."""
        return rank_in(self.features(texts, vectors) @ self._w + self._b, self.levels)

    def score_many(self, texts: list[str], vectors: npt.ArrayLike) -> Floats:
        """The score of each prompt: (1 + the strong model's expected gain) / 2."""
        gain = np.interp(self.difficulty_rank(texts, vectors), self._grid, self.curve)
        out: Floats = (1 + gain) / 2
        return out

    def score(self, text: str, vector: npt.ArrayLike) -> float:
        """How much one prompt needs the strong model, in [0, 1]; route to strong iff it is >= the threshold."""
        return float(self.score_many([text], vector)[0])

    def threshold_for_share(self, strong_share: float) -> float:
        """The threshold that sent `strong_share` (0-1) of the training prompts to the strong model."""
        share = min(max(strong_share, 0.0), 1.0)
        levels = np.linspace(0, 1, self.quantiles.size)
        return float(np.interp(1 - share, levels, self.quantiles))

    # -- the file --------------------------------------------------------------------------

    def _to_text(self) -> str:
        document = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "target": TARGET,
            "embedder": {
                "name": self.embedder,
                "kind": self.embedder_spec.kind,
                "model": self.embedder_spec.model,
                "dim": self.dim,
            },
            "text_features": list(TEXT_FEATURES),
            "mean": self.mean.tolist(),
            "scale": self.scale.tolist(),
            "weights": self.weights.tolist(),
            "intercepts": self.intercepts.tolist(),
            "difficulty_levels": self.levels.tolist(),
            "gain_curve": self.curve.tolist(),
            "score_quantiles": self.quantiles.tolist(),
            "info": self.info,
        }
        return json.dumps(document, indent=1, sort_keys=True) + "\n"

    def save(self, path: str | Path) -> None:
        """Write the router file (JSON); its content hash is `version`."""
        Path(path).write_text(self._text, encoding="utf-8")

    @classmethod
    def load(cls, path: str | Path) -> LearnedRouter:
        """Read a router file; ConfigError with a one-line reason when it is missing, malformed or incompatible."""
        where = str(path)
        try:
            document = json.loads(Path(path).read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise _bad(where, "no such router file") from None
        except OSError as exc:
            raise _bad(where, f"cannot read the router file: {exc.strerror or exc}") from None
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise _bad(where, "not a router file (not JSON); make one with `modelplane router train`") from None
        return cls.from_document(document, where)

    @classmethod
    def from_document(cls, document: object, where: str = "router") -> LearnedRouter:
        """A router from its parsed JSON document (see `load`)."""
        if not isinstance(document, dict) or document.get("format") != FORMAT:
            raise _bad(where, "not a router file; make one with `modelplane router train`")
        version = document.get("format_version")
        if isinstance(version, int) and version in _RETIRED:
            raise _bad(
                where,
                f"{_RETIRED[version]}; this modelplane reads version {FORMAT_VERSION} "
                f"(a difficulty model and a gain curve): retrain it with `modelplane router train`",
            )
        if version != FORMAT_VERSION:
            raise _bad(where, f"router format version {version!r}; this modelplane reads version {FORMAT_VERSION}")
        if document.get("target") != TARGET or document.get("text_features") != list(TEXT_FEATURES):
            raise _bad(where, "the router was trained on other features or labels; retrain it with this modelplane")
        try:
            embedder = document["embedder"]
            dim = int(embedder["dim"])
            spec = EmbedderSpec(kind=embedder["kind"], model=embedder.get("model"), dim=dim)
            keys = ("mean", "scale", "weights", "intercepts", "difficulty_levels", "gain_curve", "score_quantiles")
            arrays = [np.asarray(document[key], dtype=np.float64) for key in keys]
            mean, scale, weights, intercepts, levels, curve, quantiles = arrays
            router = cls(
                embedder=str(embedder["name"]),
                embedder_spec=spec,
                dim=dim,
                mean=mean,
                scale=scale,
                weights=weights,
                intercepts=intercepts,
                levels=levels,
                curve=curve,
                quantiles=quantiles,
                info=document.get("info") or {},
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise _bad(where, f"the router file is damaged ({exc}); retrain it") from None
        return router


def _bad(where: str, reason: str) -> ConfigError:
    return ConfigError([ConfigIssue("", reason)], where)
