"""Stage 6, route: which model answers. `single` sends every serving to the route's first model."""

from __future__ import annotations

from modelplane.config.schema import FeatureConfig
from modelplane.serving.runtime import Deployment, Runtime


def route(runtime: Runtime, feature: FeatureConfig) -> Deployment:
    """The deployment that should answer this serving."""
    return runtime.deployments[feature.route.models[0]]
