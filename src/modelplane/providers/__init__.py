"""Providers: the adapter seam (`base.py`) and one adapter per wire protocol."""

from __future__ import annotations

from pathlib import Path

from modelplane.config.schema import ProviderConfig
from modelplane.providers.base import Answer, ChatRequest, Embeddings, Provider, Reply, Stream, Timeouts, Usage

__all__ = [
    "Answer",
    "ChatRequest",
    "Embeddings",
    "Provider",
    "Reply",
    "Stream",
    "Timeouts",
    "Usage",
    "build_provider",
]


def build_provider(name: str, config: ProviderConfig, home: Path) -> Provider:
    """The adapter for one configured provider. SDK-heavy adapters are imported only when used."""
    secret = config.api_key.get_secret_value() if config.api_key else None
    if config.kind == "openai":
        from modelplane.providers.openai import OpenAIProvider

        return OpenAIProvider(
            name, base_url=config.base_url or "https://api.openai.com/v1", api_key=secret, headers=config.headers
        )
    if config.kind == "anthropic":
        from modelplane.providers.anthropic import AnthropicProvider

        return AnthropicProvider(
            name, base_url=config.base_url or "https://api.anthropic.com/v1", api_key=secret, headers=config.headers
        )
    from modelplane.providers.llamacpp import LlamaCppProvider, chat_format_for, resolve_model_path

    assert config.model is not None  # the schema requires it for llamacpp
    return LlamaCppProvider(
        name,
        model_path=resolve_model_path(config.model, home),
        n_ctx=config.n_ctx,
        n_threads=config.n_threads,
        chat_format=chat_format_for(config.model),
    )
