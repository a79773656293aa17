"""The live state built from one config: providers, deployed models, keys. Swapped whole on reload."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from modelplane.config.load import LoadedConfig
from modelplane.config.schema import FeatureConfig, KeyConfig, ModelConfig, ProviderConfig
from modelplane.providers import Provider, Timeouts, build_provider


@dataclass(frozen=True, slots=True)
class Deployment:
    """A configured model on its provider, ready to call."""

    name: str
    upstream_name: str
    config: ModelConfig
    provider: Provider
    timeouts: Timeouts


@dataclass(frozen=True, slots=True)
class Runtime:
    """Everything a serving needs from config, resolved once so the hot path only does dict lookups."""

    loaded: LoadedConfig
    providers: dict[str, Provider]
    deployments: dict[str, Deployment]
    keys: dict[str, KeyConfig]  # sha256 hex digest -> key

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
    providers: dict[str, Provider] = {}
    for name, provider_config in config.providers.items():
        previous = (reuse or {}).get(name)
        if previous is not None and previous[0] == provider_config:
            providers[name] = previous[1]
        else:
            providers[name] = build_provider(name, provider_config, loaded.home)
    deployments = {
        name: Deployment(
            name=name,
            upstream_name=model.name or name,
            config=model,
            provider=providers[model.provider],
            timeouts=Timeouts(model.timeout.connect, model.timeout.first_token, model.timeout.total),
        )
        for name, model in config.models.items()
    }
    keys = {key.hash.removeprefix("sha256:"): key for key in config.keys}
    return Runtime(loaded, providers, deployments, keys)


async def start_providers(runtime: Runtime) -> None:
    """Open every provider's pools (and load local weights) concurrently."""
    await asyncio.gather(*(provider.start() for provider in runtime.providers.values()))
