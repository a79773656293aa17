"""Routing decisions, as pure functions of a request's facts: which model answers first.

A strategy only picks; the serving's route stage (serving/route.py) puts the pick first and the
rest of the feature's chain after it, so every strategy composes with the fallback chain.

- `single`   — the route's first model (no strategy object at all: the hot path stays a dict lookup);
- `weighted` — a percent split; `sticky: tenant|serving` hashes that key (blake2b, stable across
  processes and restarts) into [0, 100), so the same tenant always lands on the same model — the
  base of A/B tests and canaries; `sticky: none` hashes the request id (a fresh draw per request);
- `rules`    — the first rule whose conditions all hold picks its model, else `default`;
  conditions: tier, estimated prompt tokens (characters / 4, OpenAI's rule of thumb; counted over
  every message's text), request `metadata` pairs, whether tools are offered;
- `cascade`  — the cheapest (first) model; escalation is the invoker's (serving/cascade.py);
- `learned`  — a router's score for the prompt ((1 + the strong model's expected gain) / 2); strong iff
  score >= threshold.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from modelplane.config.schema import Config, RouteConfig, RouteRule
from modelplane.errors import ConfigError, ConfigIssue

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt


class Scorer(Protocol):
    """A learned router (routing/learned.py): how much a prompt needs the strong model, in [0, 1]."""

    version: str
    embedder: str

    def score(self, text: str, vector: npt.NDArray[np.float32]) -> float: ...

    def threshold_for_share(self, strong_share: float) -> float: ...


# Decision and Facts are made per request: not frozen, as frozen dataclasses build about 3x slower.
@dataclass(slots=True)
class Decision:
    """What the route stage decided, as the ledger records it."""

    model: str  # the first choice
    strategy: str
    candidates: tuple[str, ...]
    score: float | None = None
    threshold: float | None = None
    reason: str = ""

    @property
    def candidates_text(self) -> str:
        return ",".join(self.candidates)


@dataclass(slots=True)
class Facts:
    """What a decision may look at, taken from the request once."""

    tenant: str = ""
    tier: str = ""
    serving_id: str = ""
    request_id: str = ""
    text: str = ""  # every message's text, joined by newlines
    metadata: Mapping[str, str] = field(default_factory=dict)
    tools: bool = False
    vector: npt.NDArray[np.float32] | None = None  # the prompt's embedding (learned routes only)
    embedder: str = ""  # the name of the embedder that made `vector`

    @property
    def tokens(self) -> int:
        """Estimated prompt tokens: characters / 4, rounded up."""
        return -(-len(self.text) // 4)


class Strategy(Protocol):
    """One feature's strategy; `candidates` are the models it picks among, in chain order."""

    @property
    def name(self) -> str: ...

    @property
    def needs_vector(self) -> bool:
        """Whether `decide` needs the prompt's embedding in `facts.vector`."""

    def decide(self, candidates: tuple[str, ...], facts: Facts) -> Decision: ...


def bucket(*parts: str) -> float:
    """A stable point in [0, 100) for a key: the same key, the same point, in every process."""
    digest = hashlib.blake2b("\x1f".join(parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64 * 100.0


@dataclass(frozen=True, slots=True)
class Weighted:
    feature: str
    split: tuple[tuple[str, float], ...]  # (model, percent), in config order
    sticky: str = "none"
    name: str = "weighted"
    needs_vector: bool = False

    def decide(self, candidates: tuple[str, ...], facts: Facts) -> Decision:
        key = {"tenant": facts.tenant, "serving": facts.serving_id}.get(self.sticky, facts.request_id)
        point = bucket(self.feature, key)
        reason = f"sticky {self.sticky}: bucket {point:.2f}"
        return Decision(pick_split(self.split, point), self.name, candidates, round(point, 4), None, reason)


def pick_split(split: tuple[tuple[str, float], ...], point: float) -> str:
    """The model whose share of [0, 100) holds `point` (the last with a share, at the very top)."""
    edge = 0.0
    for model, percent in split:
        edge += percent
        if point < edge:
            return model
    return [model for model, percent in split if percent > 0][-1]


@dataclass(frozen=True, slots=True)
class Rules:
    rules: tuple[RouteRule, ...]
    default: str
    name: str = "rules"
    needs_vector: bool = False

    def decide(self, candidates: tuple[str, ...], facts: Facts) -> Decision:
        for i, rule in enumerate(self.rules):
            if matches(rule, facts):
                return Decision(rule.model, self.name, candidates, reason=f"rules[{i}]")
        return Decision(self.default, self.name, candidates, reason="default")


def matches(rule: RouteRule, facts: Facts) -> bool:
    """Every condition the rule gives holds for the request."""
    if rule.tier is not None and facts.tier not in rule.tier:
        return False
    if rule.tools is not None and rule.tools != facts.tools:
        return False
    if rule.min_tokens is not None or rule.max_tokens is not None:
        tokens = facts.tokens
        if rule.min_tokens is not None and tokens < rule.min_tokens:
            return False
        if rule.max_tokens is not None and tokens > rule.max_tokens:
            return False
    return all(facts.metadata.get(key) == value for key, value in (rule.metadata or {}).items())


@dataclass(frozen=True, slots=True)
class Cascade:
    name: str = "cascade"
    needs_vector: bool = False

    def decide(self, candidates: tuple[str, ...], facts: Facts) -> Decision:
        return Decision(candidates[0], self.name, candidates, reason="cheapest first")


@dataclass(frozen=True, slots=True)
class Learned:
    router: Scorer
    weak: str
    strong: str
    threshold: float
    name: str = "learned"
    needs_vector: bool = True

    def decide(self, candidates: tuple[str, ...], facts: Facts) -> Decision:
        if facts.vector is None:
            return Decision(self.strong, self.name, candidates, None, self.threshold, "no embedding: strong")
        if facts.embedder != self.router.embedder:  # its vectors would mean nothing to the router
            reason = f"router wants {self.router.embedder} vectors, the cache embeds with {facts.embedder}: strong"
            return Decision(self.strong, self.name, candidates, None, self.threshold, reason)
        score = float(self.router.score(facts.text, facts.vector))
        return learned_decision(score, self.threshold, self.weak, self.strong, candidates, self.router.version)


def learned_decision(
    score: float, threshold: float, weak: str, strong: str, candidates: tuple[str, ...], version: str = ""
) -> Decision:
    """Strong iff the router's score (how much the strong model is expected to gain) reaches the threshold."""
    model = strong if score >= threshold else weak
    reason = f"router {version}".strip()
    return Decision(model, "learned", candidates, score, threshold, reason)


def build(feature: str, route: RouteConfig, router: Scorer | None = None) -> Strategy | None:
    """The feature's strategy object; None for `single`, which needs none."""
    if route.strategy == "weighted":
        assert route.split is not None
        return Weighted(feature, tuple(route.split.items()), route.sticky)
    if route.strategy == "rules":
        return Rules(tuple(route.rules), route.default or route.models[0])
    if route.strategy == "cascade":
        return Cascade()
    if route.strategy == "learned":
        assert router is not None and route.weak is not None and route.strong is not None
        threshold = route.threshold if route.strong_share is None else router.threshold_for_share(route.strong_share)
        return Learned(router, route.weak, route.strong, threshold)
    return None


def request_text(body: Mapping[str, Any]) -> str:
    """Every message's text, joined by newlines (text parts of multi-part content included)."""
    parts: list[str] = []
    for message in body.get("messages") or ():
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, str):
            parts.append(content)
        elif isinstance(content, list):
            parts += [p["text"] for p in content if isinstance(p, dict) and isinstance(p.get("text"), str)]
    return "\n".join(parts)


def request_metadata(body: Mapping[str, Any]) -> dict[str, str]:
    """The request's `metadata` object, values as strings (OpenAI's own field: string pairs)."""
    metadata = body.get("metadata")
    if not isinstance(metadata, dict):
        return {}
    return {str(key): str(value) for key, value in metadata.items()}


def load_strategies(config: Config, config_dir: Path | None) -> dict[str, Strategy]:
    """Every non-`single` feature's strategy; learned routers are loaded here (ConfigError on a bad file)."""
    strategies: dict[str, Strategy] = {}
    for name, feature in config.features.items():
        router = None
        if feature.route.router is not None:
            router = _router(name, (config_dir or Path.cwd()) / feature.route.router)
        strategy = build(name, feature.route, router)
        if strategy is not None:
            strategies[name] = strategy
    return strategies


def _router(feature: str, path: Path) -> Scorer:
    from modelplane.routing.learned import LearnedRouter

    try:
        return LearnedRouter.load(path)
    except ConfigError as exc:
        where = f"features.{feature}.route.router"
        raise ConfigError([ConfigIssue(where, f"{path}: {i.message}") for i in exc.issues], exc.source) from exc
