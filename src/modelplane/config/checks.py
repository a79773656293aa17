"""Checks that relate one config section to another; each yields issues with the path of the bad value."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path

from modelplane.cache.embedder import embedder_issues
from modelplane.config.schema import LOCAL_TENANT, Config, FeatureConfig, RouteConfig
from modelplane.errors import ConfigError, ConfigIssue


def cross_check(config: Config) -> list[ConfigIssue]:
    """Every reference between sections must resolve; return all problems found."""
    return [*_models(config), *_features(config), *_keys(config), *_tenants(config), *_cache(config)]


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
    named = _named(route)  # reported where the strategy names them, not in `models` it filled in
    for where, models in lists:
        for i, model in enumerate(models):
            if model not in config.models and not (where == "models" and model in named.values()):
                yield ConfigIssue(f"{path}.{where}[{i}]", f"unknown model '{model}'{_known(config.models)}")
    yield from _strategy_models(config, route, path)
    for tier in route.tiers:
        if tier not in config.tiers:
            yield ConfigIssue(f"{path}.tiers.{tier}", f"unknown tier '{tier}'{_known(config.tiers)}")
        elif feature.tiers is not None and tier not in feature.tiers:
            yield ConfigIssue(f"{path}.tiers.{tier}", f"tier '{tier}' may not use this feature (features.{name}.tiers)")


def _named(route: RouteConfig) -> dict[str, str]:
    """The models a strategy names, by where it names them."""
    named = {f"split.{m}": m for m in route.split or {}}
    named |= {f"rules[{i}].model": rule.model for i, rule in enumerate(route.rules)}
    pairs = (("default", route.default), ("weak", route.weak), ("strong", route.strong))
    return named | {where: m for where, m in pairs if m is not None}


def _strategy_models(config: Config, route: RouteConfig, path: str) -> Iterator[ConfigIssue]:
    """Models a strategy names must be configured; the ones it picks must be among `route.models`."""
    for where, model in _named(route).items():
        if model not in config.models:
            yield ConfigIssue(f"{path}.{where}", f"unknown model '{model}'{_known(config.models)}")
        elif model not in route.models:
            yield ConfigIssue(f"{path}.{where}", f"'{model}' is not one of the route's models ({path}.models)")
    others = {"accept.judge.model": route.accept.judge.model if route.accept and route.accept.judge else None}
    if route.shadow is not None:
        others |= {"shadow.judge": route.shadow.judge, "shadow.strong": route.shadow.strong}
    for where, other in others.items():
        if other is not None and other not in config.models:
            yield ConfigIssue(f"{path}.{where}", f"unknown model '{other}'{_known(config.models)}")
    for i, rule in enumerate(route.rules):
        for tier in rule.tier or []:
            if tier not in config.tiers:
                yield ConfigIssue(f"{path}.rules[{i}].tier", f"unknown tier '{tier}'{_known(config.tiers)}")
    if route.accept is not None and route.strategy != "cascade":
        yield ConfigIssue(f"{path}.accept", f"`accept` is for strategy 'cascade', not '{route.strategy}'")


def route_files(config: Config, config_dir: Path) -> list[ConfigIssue]:
    """Files a route points to (a learned router) must exist, relative to the config file, and load
    (a router file of an older format, or a damaged one, fails here rather than at `serve`)."""
    issues = []
    for name, feature in config.features.items():
        router = feature.route.router
        if router is None:
            continue
        where = f"features.{name}.route.router"
        if not (config_dir / router).is_file():
            issues.append(ConfigIssue(where, f"router file not found: {config_dir / router}"))
            continue
        from modelplane.routing.learned import LearnedRouter

        try:
            LearnedRouter.load(config_dir / router)
        except ConfigError as exc:
            issues += [ConfigIssue(where, f"{config_dir / router}: {issue.message}") for issue in exc.issues]
    return issues


def output_schemas(config: Config, config_dir: Path) -> list[ConfigIssue]:
    """Every feature's `output.json_schema` (a file relative to the config, or inline) must load
    and be a valid JSON Schema: checked now, so `config check` catches what `serve` would refuse."""
    if not any(f.output is not None and f.output.json_schema is not None for f in config.features.values()):
        return []
    from modelplane.serving.fallback import deterministic_answer
    from modelplane.serving.validate import check, feature_specs  # jsonschema loads only when a schema is named

    try:
        specs = feature_specs(config, config_dir)
    except ConfigError as exc:
        return exc.issues
    # The deterministic answer is served when every model failed; on a feature that promises JSON
    # it must keep the promise, or the product gets the very text validation exists to stop.
    issues = []
    for name, spec in specs.items():
        text = config.features[name].route.deterministic_fallback
        verdict = check(spec, deterministic_answer(text).body) if text is not None else None
        if verdict is not None and (not verdict.ok or verdict.repaired):
            why = "is not JSON" if verdict.error and verdict.error.startswith("not valid JSON") else verdict.error
            message = f"does not match the feature's output schema: {why}"
            issues.append(ConfigIssue(f"features.{name}.route.deterministic_fallback", message))
    return issues


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


def _cache(config: Config) -> Iterator[ConfigIssue]:
    if config.cache.backend == "redis" and config.redis is None:
        yield ConfigIssue("cache.backend", "the redis backend needs a `redis:` section with its url")
    yield from embedder_issues(config)


def _known(names: Mapping[str, object]) -> str:
    return f" (known: {', '.join(sorted(names))})" if names else " (none are configured)"
