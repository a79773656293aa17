"""Config: the typed schema, loading with `${ENV}` interpolation, versions, the embedded default."""

from modelplane.config.load import EMBEDDED_DEFAULT_YAML, LoadedConfig, load_config, parse_config
from modelplane.config.schema import Config, FeatureConfig, ModelConfig, Price, ProviderConfig

__all__ = [
    "EMBEDDED_DEFAULT_YAML",
    "Config",
    "FeatureConfig",
    "LoadedConfig",
    "ModelConfig",
    "Price",
    "ProviderConfig",
    "load_config",
    "parse_config",
]
