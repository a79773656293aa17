"""Stage 6, route: which models answer, in order. `single` tries the route's first model, then the
rest of the chain (the route's other models, then its `fallback` models) as fallbacks."""

from __future__ import annotations

from modelplane.serving.runtime import Model, Runtime


def route(runtime: Runtime, feature_name: str) -> tuple[Model, ...]:
    """The models to try for this serving, first choice first."""
    return runtime.chains[feature_name]
