"""Stage 6, route: which models answer, in order, and why (the decision goes to the ledger).

The feature's strategy (routing/strategies.py) picks the first model; the rest of the chain
follows as fallbacks (the route's other models, then its `fallback` models). `single` is one
dict lookup and a decision built once per config. A route may give a tier its own models
(`route.tiers`), which replace `route.models` for that tier's callers and are served `single`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

from modelplane.routing.strategies import Facts, Strategy, request_metadata, request_text
from modelplane.serving.cascade import Acceptance
from modelplane.serving.runtime import Model, Runtime
from modelplane.serving.state import Serving

if TYPE_CHECKING:
    from modelplane.embeddings.base import AsyncEmbedder, Embedder


class EmbedderSource(Protocol):
    """Where learned routes get their embedder: the response cache's, built on first use."""

    @property
    def embedder(self) -> Embedder | AsyncEmbedder: ...


def route(runtime: Runtime, feature_name: str, tier: str) -> tuple[Model, ...]:
    """The feature's chain as configured, first model first (embeddings, and every `single` route)."""
    chain = runtime.chains.get((feature_name, tier))
    return runtime.chains[feature_name, None] if chain is None else chain


async def choose(
    runtime: Runtime, serving: Serving, body: dict[str, Any], embeddings: EmbedderSource
) -> tuple[tuple[Model, ...], Acceptance | None]:
    """The chain for this serving (the pick first) and, for a cascade, its acceptance checks.

    `embeddings` holds the semantic cache's embedder; only learned routes use it.
    """
    key: tuple[str, str | None] = (serving.feature, serving.caller.tier if serving.caller else "")
    chain = runtime.chains.get(key)
    if chain is None:
        key = (serving.feature, None)
        chain = runtime.chains[key]
        strategy = runtime.strategies.get(serving.feature)
        if strategy is not None:
            return await _decide(runtime, strategy, serving, body, chain, embeddings)
    serving.route = runtime.decisions[key]
    return chain, None


async def _decide(
    runtime: Runtime,
    strategy: Strategy,
    serving: Serving,
    body: dict[str, Any],
    chain: tuple[Model, ...],
    embeddings: EmbedderSource,
) -> tuple[tuple[Model, ...], Acceptance | None]:
    candidates = tuple(runtime.features[serving.feature].route.models)
    text = request_text(body)
    vector, embedder_name = None, ""
    if strategy.needs_vector:
        from modelplane.embeddings.base import embed_async

        embedder = embeddings.embedder
        vector, embedder_name = (await embed_async(embedder, [text]))[0], embedder.name
    facts = Facts(
        tenant=serving.caller.tenant if serving.caller else "",
        tier=serving.caller.tier if serving.caller else "",
        serving_id=serving.serving_id,
        request_id=serving.id,
        text=text,
        metadata=request_metadata(body),
        tools=bool(body.get("tools")),
        vector=vector,
        embedder=embedder_name,
    )
    decision = strategy.decide(candidates, facts)
    serving.route = decision
    return first(chain, decision.model), runtime.cascades.get(serving.feature)


def first(chain: tuple[Model, ...], name: str) -> tuple[Model, ...]:
    """The chain with model `name` moved to the front (unchanged when it leads already)."""
    if chain[0].name == name:
        return chain
    picked = [m for m in chain if m.name == name]
    return (*picked, *(m for m in chain if m.name != name))
