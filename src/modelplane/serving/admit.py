"""Stage 2, admit: is the requested feature there, open to the caller's tier, and within its limits?"""

from __future__ import annotations

from modelplane.config.schema import FeatureConfig
from modelplane.errors import Forbidden, NotFound
from modelplane.serving.auth import Caller
from modelplane.serving.limits import Limiter
from modelplane.serving.runtime import Runtime


def pick_feature(runtime: Runtime, header: str | None, body_model: object) -> str:
    """The feature named by `X-Modelplane-Feature`, else by the body's `model`."""
    name = header or body_model
    if not isinstance(name, str) or not name:
        raise NotFound("name a feature: send `X-Modelplane-Feature: <feature>` or set `model` to a feature name")
    if name not in runtime.features:
        known = ", ".join(sorted(runtime.features)) or "none"
        raise NotFound(f"unknown feature '{name}' (features: {known})")
    return name


async def admit(runtime: Runtime, limiter: Limiter, caller: Caller, feature_name: str) -> FeatureConfig:
    """The feature's config, if the caller's tier may use it and no rate limit or budget is reached
    (see `limits.py`); counts the request against the caller's rpm."""
    feature = runtime.features[feature_name]
    if feature.tiers is not None and caller.tier not in feature.tiers:
        raise Forbidden(
            f"feature '{feature_name}' is not available on tier '{caller.tier}'", code="feature_not_in_tier"
        )
    await limiter.admit(caller, feature_name)
    return feature


def visible_features(runtime: Runtime, caller: Caller) -> list[str]:
    """Features the caller's tier may use, for `/v1/models`."""
    return [name for name, f in runtime.features.items() if f.tiers is None or caller.tier in f.tiers]
