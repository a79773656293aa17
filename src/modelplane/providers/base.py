"""The provider seam: one required async method, `chat`; capabilities are attributes.

Every adapter speaks OpenAI's chat-completions shape to the rest of modelplane, whatever
its wire protocol, and classifies its failures into `ProviderError` with an `ErrorClass`.
Retries, fallbacks and breakers wrap this seam; they never live inside an adapter.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, ClassVar

from modelplane.errors import ErrorClass, ProviderError

JSON = dict[str, Any]


@dataclass(slots=True)
class Usage:
    """Tokens of one call. `cached_input_tokens` is a part of `input_tokens`, not extra."""

    input_tokens: int = 0
    cached_input_tokens: int = 0
    cache_write_tokens: int = 0
    output_tokens: int = 0
    reasoning_tokens: int = 0


@dataclass(frozen=True, slots=True)
class Timeouts:
    """Limits of one call (one attempt: each retry gets them afresh), in seconds.

    `connect`: the TCP/TLS connect; `first_token`: the wait for the response headers, and then for
    every later byte or chunk; `total`: the whole call. A serving's own cap, retries and fallbacks
    included, is the feature's `deadline`, which cuts these to what is left of it.
    """

    connect: float = 10.0
    first_token: float = 60.0
    total: float = 600.0


@dataclass(slots=True)
class ChatRequest:
    """An OpenAI-shaped chat request for one upstream model.

    `body` is the client's body; adapters replace its `model` with `model` (the
    upstream's name) and never mutate the caller's dict.
    """

    body: JSON
    model: str
    timeouts: Timeouts = field(default_factory=Timeouts)

    @property
    def stream(self) -> bool:
        return bool(self.body.get("stream"))

    @property
    def include_usage(self) -> bool:
        """Did the client ask for the final usage chunk of a stream?"""
        options = self.body.get("stream_options")
        return isinstance(options, dict) and bool(options.get("include_usage"))


@dataclass(slots=True)
class Answer:
    """A complete (non-streamed) reply as an OpenAI chat.completion.

    `raw` holds the encoded body when the adapter already has it (pass-through), so the
    gateway need not serialize it again; otherwise it is None and `body` is encoded.
    """

    body: JSON
    usage: Usage
    model: str
    raw: bytes | None = None
    first_token_at: float | None = None


class Stream(ABC):
    """A streamed reply: OpenAI chat.completion.chunk objects, already JSON-encoded.

    The adapter opens the upstream before returning a Stream, so refusals (429, 401, …)
    raise from `chat` before any byte can reach the client. A stream that breaks later
    raises `ProviderError(STREAM_CUT)` from iteration. `usage` is complete once iteration ends.
    """

    def __init__(self, model: str) -> None:
        self.model = model
        self.usage = Usage()
        self.first_token_at: float | None = None
        self.finish_reason: str | None = None

    @abstractmethod
    def chunks(self) -> AsyncIterator[bytes]:
        """Yield each chunk as encoded JSON (without the SSE `data: ` framing)."""

    async def aclose(self) -> None:  # noqa: B027 - optional hook with a no-op default
        """Release the upstream connection early (client went away)."""

    def mark_first_token(self) -> None:
        if self.first_token_at is None:
            self.first_token_at = time.perf_counter()


Reply = Answer | Stream


@dataclass(slots=True)
class Embeddings:
    """An OpenAI-shaped embeddings response."""

    body: JSON
    usage: Usage
    model: str


class Provider(ABC):
    """An upstream API. Subclasses implement `chat`; `embed` only when they can.

    The capability attributes say what a request may ask of it beyond text in, one text answer
    out; the gateway never sends a request a provider would have to drop part of silently.
    """

    kind: ClassVar[str]
    supports_embeddings: ClassVar[bool] = False
    supports_choices: ClassVar[bool] = False  # `n` > 1: several choices in one answer
    supports_logprobs: ClassVar[bool] = False  # `logprobs: true` fills each choice's `logprobs`
    # The content part types a message may carry (`text`, `image_url`, …); None: any, the upstream decides.
    content_parts: ClassVar[frozenset[str] | None] = frozenset({"text"})
    # Constrains its answer to a `response_format` JSON schema (a grammar), so a feature's output
    # schema is sent to it as one when the request names none (serving/validate.py `schema_hint`).
    follows_schema: ClassVar[bool] = False

    def __init__(self, name: str) -> None:
        self.name = name

    @abstractmethod
    async def chat(self, request: ChatRequest) -> Reply:
        """Answer one chat request, as an `Answer` or (when `request.stream`) a `Stream`."""

    async def embed(self, body: JSON, model: str, timeouts: Timeouts) -> Embeddings:
        raise ProviderError(ErrorClass.BAD_REQUEST, f"provider '{self.name}' ({self.kind}) does not serve embeddings")

    async def start(self) -> None:  # noqa: B027 - optional hook with a no-op default
        """Open pools or load weights; called once when the gateway starts."""

    async def aclose(self) -> None:  # noqa: B027 - optional hook with a no-op default
        """Close pools; called once when the gateway stops."""

    @property
    def ready(self) -> bool:
        return True
