"""Checks that relate one config section to another; each yields issues with the path of the bad value."""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from modelplane.config.schema import LOCAL_TENANT, Config, FeatureConfig
from modelplane.errors import ConfigIssue


def cross_check(config: Config) -> list[ConfigIssue]:
    """Every reference between sections must resolve; return all problems found."""
    return [*_models(config), *_features(config), *_keys(config), *_tenants(config)]


def _models(config: Config) -> Iterator[ConfigIssue]:
    for name, model in config.models.items():
        if model.provider not in config.providers:
            yield ConfigIssue(
                f"models.{name}.provider", f"unknown provider '{model.provider}'{_known(config.providers)}"
            )


def _features(config: Config) -> Iterator[ConfigIssue]:
    for name, feature in config.features.items():
        if name in config.models:
            yield ConfigIssue(f"features.{name}", "a feature may not share its name with a model")
        yield from _route(config, name, feature)
        for i, tier in enumerate(feature.tiers or []):
            if tier not in config.tiers:
                yield ConfigIssue(f"features.{name}.tiers[{i}]", f"unknown tier '{tier}'{_known(config.tiers)}")


def _route(config: Config, name: str, feature: FeatureConfig) -> Iterator[ConfigIssue]:
    route, path = feature.route, f"features.{name}.route"
    lists = [("models", route.models), ("fallback", route.fallback)]
    lists += [(f"tiers.{tier}", models) for tier, models in route.tiers.items()]
    for where, models in lists:
        for i, model in enumerate(models):
            if model not in config.models:
                yield ConfigIssue(f"{path}.{where}[{i}]", f"unknown model '{model}'{_known(config.models)}")
    for tier in route.tiers:
        if tier not in config.tiers:
            yield ConfigIssue(f"{path}.tiers.{tier}", f"unknown tier '{tier}'{_known(config.tiers)}")
        elif feature.tiers is not None and tier not in feature.tiers:
            yield ConfigIssue(
                f"{path}.tiers.{tier}", f"tier '{tier}' may not use this feature (features.{name}.tiers)"
            )


def _keys(config: Config) -> Iterator[ConfigIssue]:
    seen: dict[str, int] = {}
    for i, key in enumerate(config.keys):
        if key.tier not in config.tiers:
            yield ConfigIssue(f"keys[{i}].tier", f"unknown tier '{key.tier}'{_known(config.tiers)}")
        if key.hash in seen:
            yield ConfigIssue(f"keys[{i}].hash", f"the same key is already listed as keys[{seen[key.hash]}]")
        seen.setdefault(key.hash, i)


def _tenants(config: Config) -> Iterator[ConfigIssue]:
    # A budget for a tenant no key maps to would never apply: most likely a typo.
    if not config.keys:
        for name in config.tenants:
            if name != LOCAL_TENANT:
                message = f"with no keys configured, every caller is tenant '{LOCAL_TENANT}'"
                yield ConfigIssue(f"tenants.{name}", message)
        return
    tenants = {key.tenant: key for key in config.keys}
    for name in config.tenants:
        if name not in tenants:
            yield ConfigIssue(f"tenants.{name}", f"no key belongs to tenant '{name}'{_known(tenants)}")


def _known(names: Mapping[str, object]) -> str:
    return f" (known: {', '.join(sorted(names))})" if names else " (none are configured)"
