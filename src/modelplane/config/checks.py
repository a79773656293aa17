"""Checks that relate one config section to another; each yields issues with the path of the bad value."""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from modelplane.config.schema import Config
from modelplane.errors import ConfigIssue


def cross_check(config: Config) -> list[ConfigIssue]:
    """Every reference between sections must resolve; return all problems found."""
    return [*_models(config), *_features(config), *_keys(config)]


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
        for i, model in enumerate(feature.route.models):
            if model not in config.models:
                yield ConfigIssue(
                    f"features.{name}.route.models[{i}]", f"unknown model '{model}'{_known(config.models)}"
                )
        for i, tier in enumerate(feature.tiers or []):
            if tier not in config.tiers:
                yield ConfigIssue(f"features.{name}.tiers[{i}]", f"unknown tier '{tier}'{_known(config.tiers)}")


def _keys(config: Config) -> Iterator[ConfigIssue]:
    seen: dict[str, int] = {}
    for i, key in enumerate(config.keys):
        if key.tier not in config.tiers:
            yield ConfigIssue(f"keys[{i}].tier", f"unknown tier '{key.tier}'{_known(config.tiers)}")
        if key.hash in seen:
            yield ConfigIssue(f"keys[{i}].hash", f"the same key is already listed as keys[{seen[key.hash]}]")
        seen.setdefault(key.hash, i)


def _known(names: Mapping[str, object]) -> str:
    return f" (known: {', '.join(sorted(names))})" if names else " (none are configured)"
