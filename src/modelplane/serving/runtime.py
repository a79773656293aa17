"""The live state built from one config: providers, models and their deployments, keys.

Swapped whole on reload. What must outlive a reload (breakers, balancer statistics) lives
in the gateway, keyed by deployment, not here.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from pathlib import Path

from modelplane.config.load import LoadedConfig
from modelplane.config.schema import (
    AcceptConfig,
    Config,
    FeatureConfig,
    KeyConfig,
    ModelConfig,
    Price,
    ProviderConfig,
)
from modelplane.economics.prices import PriceBook, PriceHistory
from modelplane.providers import Provider, Timeouts, build_provider
from modelplane.routing.strategies import Decision, Strategy, load_strategies
from modelplane.serving.cascade import Acceptance
from modelplane.serving.validate import OutputSpec, feature_specs


@dataclass(frozen=True, slots=True)
class Deployment:
    """One place a model is served: a provider and the upstream's name for the model there."""

    key: str  # "model@provider", the breaker's and the balancer's key
    model: str
    upstream_name: str
    provider: Provider
    weight: float


@dataclass(frozen=True, slots=True)
class Model:
    """A configured, priced model and every deployment that serves it."""

    name: str
    config: ModelConfig
    deployments: tuple[Deployment, ...]
    timeouts: Timeouts
    prices: PriceHistory | None = None  # None: unpriced, its calls are recorded with cost null

    def price_at(self, ts: float) -> Price | None:
        """The price in effect at unix time `ts`."""
        return None if self.prices is None else self.prices.at(ts)


@dataclass(frozen=True, slots=True)
class Runtime:
    """Everything a serving needs from config, resolved once so the hot path only does dict lookups."""

    loaded: LoadedConfig
    providers: dict[str, Provider]
    models: dict[str, Model]
    keys: dict[str, KeyConfig]  # sha256 hex digest -> key
    # (feature, tier) -> its models in fallback order; (feature, None) for tiers the route does not name
    chains: dict[tuple[str, str | None], tuple[Model, ...]]
    outputs: dict[str, OutputSpec]  # feature -> how its answers are validated (only features that ask)
    prices: PriceBook  # every model's price history (config, else the shipped table)
    # Routing (routing/strategies.py): a strategy for each feature that is not `single`, the
    # ledger's decision for every chain that needs none, and each cascade feature's checks.
    strategies: dict[str, Strategy] = field(default_factory=dict)
    decisions: dict[tuple[str, str | None], Decision] = field(default_factory=dict)
    cascades: dict[str, Acceptance] = field(default_factory=dict)

    @property
    def version(self) -> str:
        return self.loaded.version

    @property
    def features(self) -> dict[str, FeatureConfig]:
        return self.loaded.config.features

    @property
    def open_access(self) -> bool:
        """No keys configured: every caller is the local tenant (only allowed on loopback)."""
        return not self.keys


def build_runtime(loaded: LoadedConfig, reuse: dict[str, tuple[ProviderConfig, Provider]] | None = None) -> Runtime:
    """Resolve a loaded config. Providers whose config did not change are reused (keeping pools and weights)."""
    config = loaded.config
    outputs = feature_specs(config, None if loaded.embedded else Path(loaded.source).parent)
    providers: dict[str, Provider] = {}
    for name, provider_config in config.providers.items():
        previous = (reuse or {}).get(name)
        if previous is not None and previous[0] == provider_config:
            providers[name] = previous[1]
        else:
            providers[name] = build_provider(name, provider_config, loaded.home)
    book = PriceBook.from_config(config)
    models = {name: _model(name, model, providers, book) for name, model in config.models.items()}
    chains = _chains(config, models)
    keys = {key.hash.removeprefix("sha256:"): key for key in config.keys}
    strategies = load_strategies(config, None if loaded.embedded else Path(loaded.source).parent)
    routing = (strategies, _decisions(config, chains), _cascades(config, models))
    return Runtime(loaded, providers, models, keys, chains, outputs, book, *routing)


def _chains(config: Config, models: dict[str, Model]) -> dict[tuple[str, str | None], tuple[Model, ...]]:
    chains: dict[tuple[str, str | None], tuple[Model, ...]] = {}
    for name, feature in config.features.items():
        route = feature.route
        chains[name, None] = tuple(models[m] for m in (*route.models, *route.fallback))
        for tier, tier_models in route.tiers.items():
            chains[name, tier] = tuple(models[m] for m in (*tier_models, *route.fallback))
    return chains


def _decisions(
    config: Config, chains: dict[tuple[str, str | None], tuple[Model, ...]]
) -> dict[tuple[str, str | None], Decision]:
    """The decision of every chain served as is: `single` routes, and tiers with their own models."""
    decisions = {}
    for (feature, tier), chain in chains.items():
        strategy = config.features[feature].route.strategy
        reason = "tier models" if tier is not None and strategy != "single" else ""
        decisions[feature, tier] = Decision(chain[0].name, "single", tuple(m.name for m in chain), reason=reason)
    return decisions


def _cascades(config: Config, models: dict[str, Model]) -> dict[str, Acceptance]:
    cascades = {}
    for name, feature in config.features.items():
        route = feature.route
        if route.strategy == "cascade":
            accept = route.accept or AcceptConfig()
            judge = models[accept.judge.model] if accept.judge is not None else None
            cascades[name] = Acceptance(accept, len(route.models), judge)
    return cascades


def _model(name: str, config: ModelConfig, providers: dict[str, Provider], book: PriceBook) -> Model:
    upstream = config.name or name
    deployments = [Deployment(f"{name}@{config.provider}", name, upstream, providers[config.provider], config.weight)]
    deployments += [
        Deployment(f"{name}@{d.provider}", name, d.name or upstream, providers[d.provider], d.weight)
        for d in config.deployments
    ]
    timeouts = Timeouts(config.timeout.connect, config.timeout.first_token, config.timeout.total)
    return Model(name, config, tuple(deployments), timeouts, book.histories.get(name))


async def start_providers(runtime: Runtime) -> None:
    """Open every provider's pools (and load local weights) concurrently."""
    await asyncio.gather(*(provider.start() for provider in runtime.providers.values()))
