"""Stage 6, route: which models answer, in order. `single` tries the route's first model, then the
rest of the chain (the route's other models, then its `fallback` models) as fallbacks. A route may
give a tier its own models (`route.tiers`), which replace `route.models` for that tier's callers."""

from __future__ import annotations

from modelplane.serving.runtime import Model, Runtime


def route(runtime: Runtime, feature_name: str, tier: str) -> tuple[Model, ...]:
    """The models to try for this serving, first choice first."""
    chain = runtime.chains.get((feature_name, tier))
    return runtime.chains[feature_name, None] if chain is None else chain
