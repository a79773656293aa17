"""Which embedder the semantic cache uses, as `cache.embedder` names it in config.

    wordllama                     the default; its weights ship in the wheel (256 dimensions)
    wordllama:128                 the same model truncated (64, 128 or 256)
    sentence-transformers:NAME    a sentence-transformers model from the local cache (the `st` extra)
    model:NAME                    a configured model's `/v1/embeddings` (an `openai`-kind provider)

The text itself labels the vectors an entry was stored with: entries embedded by another
embedder are not loaded, since their vectors are not comparable.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from modelplane.config.schema import Config
from modelplane.errors import ConfigIssue

if TYPE_CHECKING:  # numpy loads only when a feature turns the semantic cache on
    from modelplane.embeddings.base import AsyncEmbedder, EmbedCall, Embedder
__all__ = ["EmbedderChoice", "build_embedder", "embedder_issues", "parse_embedder"]

Kind = Literal["wordllama", "sentence-transformers", "model"]
_KINDS: tuple[Kind, ...] = ("wordllama", "sentence-transformers", "model")
_WORDLLAMA_DIMS = ("64", "128", "256")
EMBEDDINGS_PROVIDERS = ("openai",)  # provider kinds that serve /v1/embeddings


@dataclass(frozen=True, slots=True)
class EmbedderChoice:
    kind: Kind
    arg: str | None  # wordllama: its dim; sentence-transformers: the model; model: the configured model

    @property
    def label(self) -> str:
        return self.kind if self.arg is None else f"{self.kind}:{self.arg}"


def parse_embedder(text: str) -> EmbedderChoice:
    """`kind[:arg]` as an `EmbedderChoice`; raises ValueError with a message fit for a ConfigIssue."""
    kind, _, arg = text.partition(":")
    if kind not in _KINDS:
        raise ValueError(f"unknown embedder '{kind}' (known: wordllama, sentence-transformers:NAME, model:NAME)")
    choice = EmbedderChoice(kind, arg or None)
    if kind == "wordllama" and arg and arg not in _WORDLLAMA_DIMS:
        raise ValueError(f"wordllama dim must be one of {', '.join(_WORDLLAMA_DIMS)}, not {arg!r}")
    if kind != "wordllama" and not arg:
        raise ValueError(f"{kind} needs a name: '{kind}:NAME'")
    return choice


def embedder_issues(config: Config, path: str = "cache.embedder") -> list[ConfigIssue]:
    """What is wrong with the configured embedder: its spelling, its model, a missing extra."""
    try:
        choice = parse_embedder(config.cache.embedder)
    except ValueError as exc:
        return [ConfigIssue(path, str(exc))]
    if choice.kind == "sentence-transformers" and importlib.util.find_spec("sentence_transformers") is None:
        return [ConfigIssue(path, "sentence-transformers is not installed: pip install 'modelplane[st]'")]
    if choice.kind == "model":
        model = config.models.get(choice.arg or "")
        if model is None:
            known = ", ".join(sorted(config.models)) or "none are configured"
            return [ConfigIssue(path, f"unknown model '{choice.arg}' (known: {known})")]
        provider = config.providers.get(model.provider)
        if provider is not None and provider.kind not in EMBEDDINGS_PROVIDERS:
            message = f"model '{choice.arg}' is on a '{provider.kind}' provider, which serves no /v1/embeddings"
            return [ConfigIssue(path, message)]
    return []


def build_embedder(choice: EmbedderChoice, embed_call: EmbedCall | None = None) -> Embedder | AsyncEmbedder:
    """The embedder a choice names; `embed_call` posts to the configured model for `model:NAME`."""
    if choice.kind == "wordllama":
        from modelplane.embeddings.wordllama import WordLlamaEmbedder

        return WordLlamaEmbedder(dim=int(choice.arg or WordLlamaEmbedder.DEFAULT_DIM))
    if choice.kind == "sentence-transformers":
        from modelplane.embeddings.sentence_transformers import SentenceTransformerEmbedder

        return SentenceTransformerEmbedder(choice.arg or SentenceTransformerEmbedder.DEFAULT_MODEL)
    from modelplane.embeddings.provider import ProviderEmbedder

    if embed_call is None:
        raise ValueError("a model embedder needs the call that reaches its provider")
    return ProviderEmbedder(choice.arg or "", 0, embed_call)  # its dim is learnt from the first answer
