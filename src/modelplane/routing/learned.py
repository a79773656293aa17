"""The learned router: from a prompt's embedding and a few cheap text features, how much the strong model is needed.

The model is two logistic regressions over the same features (numpy only; see train.py),
one for P(the strong model answers well), one for P(the weak model does). The score is
(1 + P(strong ok) - P(weak ok)) / 2, in [0, 1]: above 0.5 the strong model is expected to
do better, and ranking by it sends first the prompts where the strong model gains most —
a prompt both models fail (or both pass) gains nothing from the strong model, so predicting
only "the weak model will fail" routes hard-for-everyone prompts for nothing.

It is kept in one small JSON file
that a feature's route config points to. The file carries a format version, the embedder
it was trained with (name, kind, dim: vectors from another embedder mean nothing to it),
the text features in order, the standardisation and the weights, and the quantiles of
its scores on the training prompts, so a threshold can be picked by the share of calls it
sends to the strong model. Never a pickle: loading a router file runs no code.

A decision is one dot product after embedding (a few µs): route to the strong model iff
`score(text, vector) >= threshold`; the threshold lives in the route config.
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

__all__ = ["FORMAT", "FORMAT_VERSION", "TEXT_FEATURES", "LearnedRouter", "text_features"]

Floats = npt.NDArray[np.float64]
FORMAT = "modelplane-router"
FORMAT_VERSION = 2  # 1: the first 16 text features only (read no more: retrain)
TARGET = "strong_minus_weak"  # two heads: P(strong ok) and P(weak ok); score = (1 + difference) / 2

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


def score_from_logits(logits: Floats) -> Floats:
    """Rows of (strong ok, weak ok) logits to scores: (1 + P(strong ok) - P(weak ok)) / 2."""
    p = 1 / (1 + np.exp(-logits))
    out: Floats = (1 + p[:, 0] - p[:, 1]) / 2
    return out


class LearnedRouter:
    """A trained router: `score` says how much one prompt needs the strong model (see the module docstring).

    `weights` has one row per head (strong ok, weak ok) over the features; `bias` one per head.
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
        bias: Floats,
        quantiles: Floats,
        info: Mapping[str, Any] | None = None,
    ) -> None:
        width = dim + len(TEXT_FEATURES)
        if not (mean.shape == scale.shape == (width,) and weights.shape == (2, width) and bias.shape == (2,)):
            raise ValueError(f"a router over {dim}-dim vectors needs {width} means and scales, 2x{width} weights")
        self.embedder = embedder
        self.embedder_spec = embedder_spec
        self.dim = dim
        self.mean, self.scale, self.weights, self.bias = mean, scale, weights, bias
        self.quantiles = quantiles
        self.info: dict[str, Any] = dict(info or {})
        # Folding the standardisation into the weights makes a decision one dot product.
        self._w: Floats = (weights / scale).T
        self._b: Floats = bias - weights @ (mean / scale)
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

    def score_many(self, texts: list[str], vectors: npt.ArrayLike) -> Floats:
        """The score of each prompt: (1 + P(strong ok) - P(weak ok)) / 2."""
        return score_from_logits(self.features(texts, vectors) @ self._w + self._b)

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
            "bias": self.bias.tolist(),
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
        if version == 1:
            raise _bad(
                where,
                f"router format version 1 (16 text features); this modelplane reads version {FORMAT_VERSION} "
                f"({len(TEXT_FEATURES)} text features): retrain it with `modelplane router train`",
            )
        if version != FORMAT_VERSION:
            raise _bad(where, f"router format version {version!r}; this modelplane reads version {FORMAT_VERSION}")
        if document.get("target") != TARGET or document.get("text_features") != list(TEXT_FEATURES):
            raise _bad(where, "the router was trained on other features or labels; retrain it with this modelplane")
        try:
            embedder = document["embedder"]
            dim = int(embedder["dim"])
            spec = EmbedderSpec(kind=embedder["kind"], model=embedder.get("model"), dim=dim)
            arrays = [np.asarray(document[key], dtype=np.float64) for key in ("mean", "scale", "weights", "bias")]
            quantiles = np.asarray(document["score_quantiles"], dtype=np.float64)
            router = cls(
                embedder=str(embedder["name"]),
                embedder_spec=spec,
                dim=dim,
                mean=arrays[0],
                scale=arrays[1],
                weights=arrays[2],
                bias=arrays[3],
                quantiles=quantiles,
                info=document.get("info") or {},
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise _bad(where, f"the router file is damaged ({exc}); retrain it") from None
        if not all(np.isfinite(a).all() for a in (*arrays, quantiles)) or (arrays[1] <= 0).any():
            raise _bad(where, "the router file is damaged (non-finite weights); retrain it")
        return router


def _bad(where: str, reason: str) -> ConfigError:
    return ConfigError([ConfigIssue("", reason)], where)
